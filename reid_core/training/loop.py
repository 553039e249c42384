"""The pieces of the training loop around the Trainer: its settings, what a step uses, its
optional aids, and the logged values of an epoch's steps, read from the device once per logging
interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from reid_core.errors import ReidError
from reid_core.training.clipping import AdaptiveClipper
from reid_core.training.compiling import Compiled
from reid_core.training.distributed import SINGLE, DistContext
from reid_core.training.profile import StepProfiler
from reid_core.training.schedule import LrSchedule


class NonFiniteLossError(ReidError):
    """The loss became NaN or infinite; the run stops, the last good checkpoint is kept."""

    exit_code = 1


class StepLogs:
    """The logged parts of an epoch's steps, kept on the device and read in one go: once per
    logging interval and at the epoch end. A non-finite loss among them raises naming the first
    step that had one (on every rank at once under torchrun)."""

    def __init__(self, dist: DistContext, epoch: int) -> None:
        self.dist, self.epoch = dist, epoch
        self.pending: list[tuple[int, list[str], torch.Tensor]] = []
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}  # a per-view key is absent from steps without that view
        self.samples = 0
        self.wait_s = 0.0

    def add(self, step: int, size: int, names: list[str], values: torch.Tensor) -> None:
        self.pending.append((step, names, values))
        self.samples += size

    def read(self) -> dict[str, float]:
        """The latest step's logs (averaged over ranks); the pending ones join the sums."""
        if not self.pending:
            return {}
        flat = torch.cat([v for _, _, v in self.pending]).tolist()  # the one device read
        rows, start = [], 0
        for step, names, _ in self.pending:
            rows.append((step, dict(zip(names, flat[start : start + len(names)], strict=True))))
            start += len(names)
        self.pending.clear()
        bad = [step for step, row in rows if not math.isfinite(row["loss"])]
        first = self.dist.first_step(bad[0] if bad else None)
        if first is not None:
            raise NonFiniteLossError(f"non-finite loss at epoch {self.epoch} step {first}")
        for _, row in rows:
            for k, v in row.items():
                self.sums[k] = self.sums.get(k, 0.0) + v
                self.counts[k] = self.counts.get(k, 0) + 1
        return self.dist.mean_logs(rows[-1][1])

    def means(self) -> dict[str, float]:
        out = {k: v / self.counts[k] for k, v in self.sums.items()}
        return self.dist.mean_logs(out)


@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs: epochs, the evaluation and logging cadence, device and precision."""

    epochs: int
    eval_every: int
    device: torch.device
    precision: str = "auto"
    max_steps_per_epoch: int | None = None
    log_every: int = 20  # steps between log lines, and between reads of the logged values
    eval_splits: tuple[str, ...] = ("val",)  # scored in order at each evaluation; "val" first


@dataclass
class StepParts:
    """What an optimizer step uses besides the model and the objective."""

    optimizer: torch.optim.Optimizer
    schedule: LrSchedule
    clipper: AdaptiveClipper
    group_names: list[str] | None = None  # one per optimizer group, for the logged rates


@dataclass
class LoopAids:
    """Optional companions of the loop: the process group (torchrun), the profiler
    (`train.profile`) and the compiled blocks (`train.compile`)."""

    dist: DistContext = SINGLE
    profiler: StepProfiler | None = None
    compiled: Compiled | None = None
