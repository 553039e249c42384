"""Stock callbacks: progress/log lines, periodic checkpoints and the best-on-val model."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from reid_core.progress import is_interactive
from reid_core.training.callbacks import Callback
from reid_core.training.checkpoint import save_checkpoint
from reid_core.training.engine import Trainer
from reid_core.training.paths import RunPaths


def _fmt(logs: dict[str, float], keys: tuple[str, ...]) -> str:
    return " ".join(f"{k}={logs[k]:.4g}" for k in keys if k in logs)


class ProgressCallback(Callback):
    """A rich bar with loss parts, lr and samples/s on a terminal; plain lines otherwise."""

    KEYS = ("loss", "ce", "sdm", "norm_penalty", "grad_norm", "samples_per_s")

    def __init__(self, log_every: int = 20, stream: Any = None) -> None:
        self.log_every = log_every
        self.stream = stream or sys.stderr
        self.bar: Any = None
        self.task: Any = None
        self.info = ""

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if is_interactive() and self.stream is sys.stderr:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn(f"epoch {epoch + 1}/{trainer.epochs}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=trainer.steps_per_epoch, info="")

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, float]) -> None:
        # the engine reads the losses once per logging interval: other steps carry speed only
        if "loss" in logs:
            self.info = f"{_fmt(logs, self.KEYS)} lr={max(trainer.lrs().values()):.3g}"
        if self.bar is not None:
            self.bar.update(self.task, advance=1, info=self.info)
        elif step % self.log_every == 0:
            self._print(f"step {step}: {self.info}")

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        keys = (*self.KEYS, "feature_norm", "spikes", "epoch_time_s")
        self._print(f"epoch {epoch + 1}/{trainer.epochs}: {_fmt(logs, keys)}")

    def on_evaluate(self, trainer: Trainer, epoch: int, split: str, metrics: dict[str, Any]):
        groups = " ".join(f"{k}={v:.3f}" for k, v in metrics["summary"].items() if k != "score")
        # one line per evaluation: the groups, then each single query modality's mAP
        singles = " ".join(
            f"{k}={v['mAP']:.3f}" for k, v in metrics["sets"].items() if "_" not in k
        )
        self._print(
            f"{split} @ epoch {epoch + 1}: score={metrics['score']:.4f} {groups} | mAP {singles}"
        )

    def on_train_end(self, trainer: Trainer, status: str) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class CheckpointCallback(Callback):
    """`last.pt` every `every` epochs (atomic) and `best.pt` when the val score improves."""

    def __init__(self, paths: RunPaths, every: int, extra: dict[str, Any]) -> None:
        self.paths = paths
        self.every = every
        self.extra = extra  # config, label map...: plain data stored with every checkpoint
        self.best: float | None = None

    @property
    def last(self) -> Path:
        return self.paths.last

    @property
    def best_path(self) -> Path:
        return self.paths.best

    def _due(self, trainer: Trainer, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0 or epoch + 1 == trainer.epochs

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        # On evaluation epochs the save waits for on_evaluate: the schedule's plateau state and
        # the best score must be in last.pt for a resumed run to continue identically.
        if self._due(trainer, epoch) and not trainer.should_eval(epoch):
            self._save(trainer, self.last)

    def on_evaluate(self, trainer: Trainer, epoch: int, split: str, metrics: dict[str, Any]):
        if split != "val":
            return
        score = float(metrics["score"])
        if self.best is None or score > self.best:
            self.best = score
            self._save(trainer, self.best_path, best_epoch=epoch)
        if self._due(trainer, epoch):
            self._save(trainer, self.last)

    def _save(self, trainer: Trainer, path: Path, **more: Any) -> None:
        save_checkpoint(
            path, {**trainer.state_dict(), **self.extra, **more, "best_val_score": self.best}
        )


class HistoryCallback(Callback):
    """Keeps every epoch's logs and evaluation in memory and in `history.jsonl`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.started = time.time()

    def _write(self, row: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        self._write({"epoch": epoch, "kind": "train", **logs})

    def on_evaluate(self, trainer: Trainer, epoch: int, split: str, metrics: dict[str, Any]):
        self._write({"epoch": epoch, "kind": split, "score": metrics["score"]})
