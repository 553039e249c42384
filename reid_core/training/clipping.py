"""Adaptive gradient clipping at a running quantile of recent gradient norms."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class AdaptiveClipper:
    """Clip the global gradient norm to the `quantile` of the last `window` norms.

    A step whose norm exceeds the threshold is clipped and counted as a spike. No clipping during
    the first `warmup_steps` (too few norms for a meaningful quantile); `quantile` None never
    clips (norms are still measured). Everything stays on the gradients' device: the recent
    norms are a ring of `window` slots (NaN: empty or a non-finite norm, left out of the
    quantile), so a step never waits to read a norm back.
    """

    def __init__(self, quantile: float | None, window: int, warmup_steps: int):
        self.quantile = quantile
        self.window = window
        self.warmup_steps = warmup_steps
        self.steps = 0  # norms offered so far (a host count: no device read)
        self._norms: torch.Tensor | None = None  # [window] on the gradients' device
        self._spikes: torch.Tensor | None = None

    def _ring(self, device: torch.device) -> torch.Tensor:
        if self._norms is None or self._norms.device != device:
            old = self._norms
            self._norms = torch.full((self.window,), float("nan"), device=device)
            if old is not None:
                self._norms.copy_(old)
        return self._norms

    def threshold(self, device: torch.device) -> torch.Tensor | None:
        """The clipping threshold (a device scalar), or None while clipping is off."""
        if self.quantile is None or self.steps < max(1, self.warmup_steps):
            return None
        return torch.nanquantile(self._ring(device), self.quantile)

    def __call__(self, parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
        """Clip in place; returns the norm before clipping as a device scalar."""
        params = [p for p in parameters if p.grad is not None]
        grads = [p.grad for p in params if p.grad is not None]
        device = params[0].device if params else torch.device("cpu")
        ring = self._ring(device)
        limit = self.threshold(device)
        norm = torch.nn.utils.get_total_norm(grads)
        if limit is not None:
            # torch scales by max_norm / (total + 1e-6) and reads max_norm on the host: max_norm
            # 1 with the norm in units of the threshold keeps the threshold on the device
            unit = (norm + 1e-6) / limit - 1e-6
            torch.nn.utils.clip_grads_with_norm_(params, 1.0, unit)
            spike = (norm > limit).long()
            self._spikes = spike if self._spikes is None else self._spikes + spike
        ring[self.steps % self.window] = torch.where(norm.isfinite(), norm, float("nan"))
        self.steps += 1
        return norm

    @property
    def spikes(self) -> int:
        """Clipped steps so far (reads the device counter)."""
        return 0 if self._spikes is None else int(self._spikes)

    @property
    def norms(self) -> list[float]:
        """The remembered finite norms, oldest first (reads the device ring)."""
        if self._norms is None:
            return []
        n = min(self.steps, self.window)
        order = [(self.steps - n + i) % self.window for i in range(n)]
        values = self._norms[order].tolist()
        return [v for v in values if v == v]

    def state_dict(self) -> dict[str, Any]:
        return {
            "norms": torch.tensor(self.norms, dtype=torch.float64),
            "spikes": self.spikes,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        norms = [float(x) for x in state["norms"].tolist()][-self.window :]
        self.steps = int(state.get("steps", len(norms)))
        ring = torch.full((self.window,), float("nan"))
        for i, value in enumerate(norms):  # the newest at slot (steps - 1) % window
            ring[(self.steps - len(norms) + i) % self.window] = value
        self._norms = ring
        self._spikes = torch.tensor(int(state["spikes"]))
