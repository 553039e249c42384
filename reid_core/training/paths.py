"""The layout of a run folder, spelled out once (`reid train --out OUT`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    """`OUT/config.yaml`, `OUT/checkpoints/{last,best}.pt`, `OUT/history.jsonl`,
    `OUT/metrics.json`, `OUT/profile.json` (profiled runs)."""

    out: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))

    @property
    def config(self) -> Path:
        return self.out / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def history(self) -> Path:
        return self.out / "history.jsonl"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.json"

    @property
    def profile(self) -> Path:
        """`profile.json` of a profiled run (`train.profile`); its trace lies beside it."""
        return self.out / "profile.json"

    def final_checkpoint(self) -> Path:
        """The weights a finished run is scored with: best-on-val when there is one."""
        return self.best if self.best.is_file() else self.last
