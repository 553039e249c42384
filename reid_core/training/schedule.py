"""Learning-rate schedules as one per-step multiplier: warmup x decay x plateau factor.

Each group keeps its own base rate (`initial_lr`); the schedule only scales it, so layered rates
stay in proportion. One object covers cosine, step, multistep and plateau and checkpoints as a
plain dict.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from reid_core.config.schema import SchedulerConfig


class LrSchedule:
    """Call `step(global_step)` before each optimizer step; `observe(metric)` after evaluations."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int, steps: int
    ) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.epochs = epochs
        self.steps_per_epoch = max(1, steps)
        self.plateau_factor = 1.0
        self.best: float | None = None
        self.bad_evals = 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def factor(self, step: int) -> float:
        cfg = self.cfg
        epoch = step / self.steps_per_epoch
        warmup_steps = cfg.warmup_epochs * self.steps_per_epoch
        warm = 1.0
        if step < warmup_steps:
            warm = cfg.warmup_factor + (1 - cfg.warmup_factor) * step / warmup_steps
        if cfg.name == "cosine":
            span = max(1e-9, self.epochs - cfg.warmup_epochs)
            t = min(1.0, max(0.0, (epoch - cfg.warmup_epochs) / span))
            decay = cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * t))
        elif cfg.name == "step":
            decay = cfg.gamma ** int(epoch // cfg.step_size)
        elif cfg.name == "multistep":
            decay = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        else:  # plateau: decays only through observe()
            decay = self.plateau_factor
        return warm * decay

    def step(self, global_step: int) -> None:
        f = self.factor(global_step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f

    def observe(self, metric: float) -> None:
        """Plateau: after `patience` evaluations without improvement, scale rates by gamma."""
        if self.cfg.name != "plateau":
            return
        if self.best is None or metric > self.best:
            self.best, self.bad_evals = metric, 0
            return
        self.bad_evals += 1
        if self.bad_evals > self.cfg.patience:
            self.plateau_factor *= self.cfg.gamma
            self.bad_evals = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "plateau_factor": self.plateau_factor,
            "best": self.best,
            "bad_evals": self.bad_evals,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_factor = float(state["plateau_factor"])
        self.best = state["best"]
        self.bad_evals = int(state["bad_evals"])
