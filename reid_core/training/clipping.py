"""Adaptive gradient clipping at a running quantile of recent gradient norms."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import torch


class AdaptiveClipper:
    """Clip the global gradient norm to the `quantile` of the last `window` norms.

    A step whose norm exceeds the threshold is clipped and counted as a spike. No clipping during
    the first `warmup_steps` (too few norms for a meaningful quantile).
    """

    def __init__(self, quantile: float | None, window: int, warmup_steps: int):
        self.quantile = quantile  # None: never clip (norms are still measured)
        self.warmup_steps = warmup_steps
        self.norms: deque[float] = deque(maxlen=window)
        self.spikes = 0

    def threshold(self) -> float | None:
        if self.quantile is None or len(self.norms) < max(1, self.warmup_steps):
            return None
        values = torch.tensor(list(self.norms), dtype=torch.float64)
        return float(torch.quantile(values, self.quantile))

    def __call__(self, parameters: Iterable[torch.nn.Parameter]) -> float:
        """Clip in place; returns the norm before clipping (a device sync: it is read on CPU)."""
        params = [p for p in parameters if p.grad is not None]
        limit = self.threshold()
        norm = float(torch.nn.utils.clip_grad_norm_(params, limit if limit else float("inf")))
        if limit is not None and norm > limit:
            self.spikes += 1
        if torch.isfinite(torch.tensor(norm)):
            self.norms.append(norm)
        return norm

    def state_dict(self) -> dict[str, Any]:
        return {
            "norms": torch.tensor(list(self.norms), dtype=torch.float64),
            "spikes": self.spikes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.norms.clear()
        self.norms.extend(float(x) for x in state["norms"].tolist())
        self.spikes = int(state["spikes"])
