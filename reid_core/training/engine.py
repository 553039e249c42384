"""The training loop: boilerplate that knows nothing of re-identification.

It runs `objective(model, batch, epoch)`, steps the optimizer with AMP, adaptive clipping and the
LR schedule, and calls the callbacks. Trackers and tuners come in only through callbacks.
Under torchrun (`dist`) every rank runs this loop in step: rank 0 alone evaluates and is the
only rank with callbacks; its stop requests and evaluation results reach the other ranks.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from reid_core.errors import ReidError
from reid_core.training.callbacks import Callback, CallbackList
from reid_core.training.checkpoint import rng_state, seed_everything, set_rng_state
from reid_core.training.compiling import COMPILE_ERRORS
from reid_core.training.loop import (  # noqa: F401 (NonFiniteLossError: raised for the engine)
    LoopAids,
    LoopSettings,
    NonFiniteLossError,
    StepLogs,
    StepParts,
)


@dataclass
class TrainState:
    epoch: int = 0  # next epoch to run (0-based)
    step: int = 0  # optimizer steps taken
    bad_images: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """`train.precision` -> the autocast dtype on `device` (None: fp32, no autocast). `auto` is
    bf16 on a CUDA device that has it (no GradScaler needed: bf16 keeps fp32's range), fp16
    with a GradScaler on older ones, and fp32 on CPU."""
    if precision == "auto" and device.type == "cuda":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif precision == "auto":
        precision = "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ReidError(f"train.precision fp16 needs CUDA (the device is {device.type}); use bf16")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ReidError("train.device is 'cuda' but CUDA is not available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class Trainer:
    """`fit()` runs from `state.epoch` to `epochs`; evaluation via `evaluate_fn(model, split)`."""

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Callable[[Any, Any, int], Any],
        step: StepParts,
        loader: Iterable[Any],
        loop: LoopSettings,
        evaluate_fn: Callable[[Any, str], dict[str, Any]] | None = None,
        callbacks: Iterable[Callback] = (),
        aids: LoopAids | None = None,
    ) -> None:
        aids = aids or LoopAids()
        self.model = model  # unwrapped: checkpoints and evaluation never see a DDP wrapper
        self.objective = objective
        self.optimizer, self.schedule, self.clipper = step.optimizer, step.schedule, step.clipper
        self.loader = loader
        self.loop = loop
        self.epochs, self.eval_every, self.device = loop.epochs, loop.eval_every, loop.device
        self.max_steps, self.log_every = loop.max_steps_per_epoch, loop.log_every
        self.eval_splits = tuple(loop.eval_splits)
        self.evaluate_fn = evaluate_fn
        self.callbacks = CallbackList(list(callbacks))
        groups = len(step.optimizer.param_groups)
        self.group_names = step.group_names or [f"group{i}" for i in range(groups)]
        self.state = TrainState()
        self.dist = aids.dist
        self.profiler = aids.profiler  # train.profile: measures a window of steps after warm-up
        self.compiled = aids.compiled  # train.compile: checked by the first step, then dropped
        self._steps_run = 0
        # every rank's (RNG state, bad images) at the last epoch end, for rank 0's checkpoint
        self._ranks: list[tuple[dict[str, torch.Tensor], int]] = []
        self.stop_reason: str | None = None
        self.last_metrics: dict[str, dict[str, Any]] = {}
        self.autocast_dtype = autocast_dtype(loop.precision, loop.device)
        self.use_scaler = self.autocast_dtype is torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_scaler)
        if loop.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    # ------------------------------------------------------------------------------- control
    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (pruning uses this)."""
        self.stop_reason = reason

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.loader)  # type: ignore[arg-type]
        return min(n, self.max_steps) if self.max_steps else n

    def lrs(self) -> dict[str, float]:
        return {
            n: g["lr"] for n, g in zip(self.group_names, self.optimizer.param_groups, strict=True)
        }

    # --------------------------------------------------------------------------------- loop
    def fit(self) -> str:
        """Train; returns the final status (`finished` or `stopped`)."""
        self.callbacks.on_train_start(self)
        status = "failed"
        try:
            for epoch in range(self.state.epoch, self.epochs):
                logs = self._run_epoch(epoch)
                self.state.epoch = epoch + 1
                self.callbacks.on_epoch_end(self, epoch, logs)
                if self.should_eval(epoch):
                    for split in self.eval_splits:
                        self._evaluate_together(split, epoch)
                self.stop_reason = self.dist.sync_stop(self.stop_reason)
                if self.stop_reason:
                    break
            status = "stopped" if self.stop_reason else "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if self.profiler is not None and not self.profiler.done and self._steps_run:
                self.profiler.finish()  # a run shorter than the window: what it measured
            self.callbacks.on_train_end(self, status)
        return status

    def should_eval(self, epoch: int) -> bool:
        """Whether `epoch` ends with a val evaluation (every `eval_every` and the last)."""
        if self.evaluate_fn is None:
            return False
        return (epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs

    def evaluate(self, split: str, epoch: int | None = None) -> dict[str, Any]:
        """Score `split` in this process (after `fit`, rank 0 scores test alone)."""
        return self._record(split, epoch, self._score(split))

    def _evaluate_together(self, split: str, epoch: int) -> dict[str, Any]:
        """Rank 0 scores, every rank records its result (the plateau schedule needs it)."""
        metrics = self.dist.broadcast(self._score(split) if self.dist.is_main else None)
        assert metrics is not None  # rank 0 always sends its result
        return self._record(split, epoch, metrics)

    def _score(self, split: str) -> dict[str, Any]:
        assert self.evaluate_fn is not None
        # Evaluation leaves the training RNG streams where it found them: only rank 0 evaluates
        # under torchrun, and a resumed run must not depend on what evaluation drew.
        saved = rng_state()
        try:
            return self.evaluate_fn(self.model, split)
        finally:
            set_rng_state(saved)

    def _record(self, split: str, epoch: int | None, metrics: dict[str, Any]) -> dict[str, Any]:
        self.last_metrics[split] = metrics
        if split == "val" and "score" in metrics:
            self.schedule.observe(float(metrics["score"]))
        self.callbacks.on_evaluate(
            self, self.state.epoch - 1 if epoch is None else epoch, split, metrics
        )
        return metrics

    def _set_epoch(self, epoch: int) -> None:
        for obj in (
            getattr(self.loader, "batch_sampler", None),
            getattr(self.loader, "dataset", None),
        ):
            set_epoch = getattr(obj, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(epoch)

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        self._set_epoch(epoch)
        self.model.train()
        self.callbacks.on_epoch_start(self, epoch)
        meter = StepLogs(self.dist, epoch)
        start = ready = time.perf_counter()
        for i, batch in enumerate(self.loader):
            wait = time.perf_counter() - ready  # time the step waited for the loader
            meter.wait_s += wait
            if self.max_steps and i >= self.max_steps:
                break
            # Every sample's anchor undecodable (on_bad_image: skip): under torchrun all ranks skip
            # the step together when any share is empty.
            if not self.dist.all_true(batch.size > 0):
                self._count_bad(batch)
                continue
            with self._profiled(wait, batch.size):
                meter.add(self.state.step, batch.size, *self._first_or_train_step(batch, epoch))
            logs: dict[str, float] = {}
            if self.state.step % self.log_every == 0:  # the one device read of the interval
                logs = meter.read()
            logs["samples_per_s"] = meter.samples / max(1e-9, time.perf_counter() - start)
            self.callbacks.on_step_end(self, self.state.step, logs)
            self.stop_reason = self.dist.sync_stop(self.stop_reason)
            if self.stop_reason:
                break
            ready = time.perf_counter()
        meter.read()  # a non-finite loss stops the run here, before any checkpoint
        elapsed = time.perf_counter() - start
        if self.dist.enabled:  # a single process's checkpoint reads its own state directly
            self._ranks = self.dist.all_gather((rng_state(), self.state.bad_images))
        out = meter.means()
        out.update(
            spikes=float(self.clipper.spikes),
            samples_per_s=meter.samples / max(1e-9, elapsed),
            data_wait_share=meter.wait_s / max(1e-9, elapsed),
            epoch_time_s=elapsed,
            bad_images=float(self._bad_images()),
        )
        out.update({f"lr.{k}": v for k, v in self.lrs().items()})
        self.state.history.append({"epoch": epoch, **out})
        return out

    @contextlib.contextmanager
    def _profiled(self, wait_s: float, samples: int) -> Iterator[None]:
        """The step under the profiler's measure for its phase (`train.profile`), if any."""
        phase = self.profiler.phase(self._steps_run) if self.profiler is not None else None
        self._steps_run += 1
        if phase is None:
            yield
            return
        assert self.profiler is not None
        with self.profiler.measure(phase, wait_s, samples):
            yield
        if self._steps_run == len(self.profiler.phases):
            self.profiler.finish()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _first_or_train_step(self, batch: Any, epoch: int) -> tuple[list[str], torch.Tensor]:
        """A step; the first compiled one falls back to eager, in one line, when torch.compile
        cannot run here (`train.compile`)."""
        if self.compiled is None:
            return self._train_step(batch, epoch)
        try:
            out = self._train_step(batch, epoch)
        except COMPILE_ERRORS as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            print(f"train.compile: cannot compile here ({reason}); training eager", file=sys.stderr)
            self.compiled.undo()
            self.compiled = None
            return self._train_step(batch, epoch)
        self.compiled = None  # compiled and working: nothing more to check
        return out

    def _train_step(self, batch: Any, epoch: int) -> tuple[list[str], torch.Tensor]:
        """One optimizer step. Nothing in it reads a device value: the logged parts come back
        as one device tensor, read once per logging interval (`StepLogs`)."""
        self._count_bad(batch)
        batch = batch.to(self.device, non_blocking=True)
        self.schedule.step(self.state.step)
        with self._autocast():
            parts = self.objective(self.model, batch, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(parts.total).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = self.clipper(p for g in self.optimizer.param_groups for p in g["params"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.step += 1
        names, values = parts.log_values()
        # torch.full, not new_tensor: a tensor of a Python number copied to a CUDA device waits
        # for the GPU's queue; a fill kernel takes the number as an argument
        weight = torch.full((), parts.sdm_weight, dtype=values.dtype, device=values.device)
        extra = torch.stack([grad_norm.float(), weight])
        return [*names, "grad_norm", "sdm_weight"], torch.cat([values, extra])

    def _count_bad(self, batch: Any) -> None:
        """One plain stderr line per undecodable image skipped (`on_bad_image: skip`), counted."""
        for path in getattr(batch, "bad", None) or []:
            self.state.bad_images += 1
            n = self.state.bad_images
            print(f"skipped undecodable image {path} ({n} so far)", file=sys.stderr, flush=True)

    # --------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "clipper": self.clipper.state_dict(),
            "epoch": self.state.epoch,
            "step": self.state.step,
            "bad_images": self._bad_images(),
            "rng": rng_state(),  # this process's: rank 0's under torchrun
            **({"rng_ranks": [r for r, _ in self._ranks]} if self.dist.enabled else {}),
        }

    def _bad_images(self) -> int:
        """Undecodable images skipped so far, on all ranks (as of the last epoch end)."""
        if not self.dist.enabled:
            return self.state.bad_images
        return sum(n for _, n in self._ranks)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.clipper.load_state_dict(state["clipper"])
        self.state.epoch = int(state["epoch"])
        self.state.step = int(state["step"])
        # The count is global: rank 0 carries it on, the others count from zero.
        self.state.bad_images = int(state.get("bad_images", 0)) if self.dist.is_main else 0
        self._load_rng(state)

    def _load_rng(self, state: dict[str, Any]) -> None:
        """Each rank's own RNG state when the checkpoint has one per rank of this world size;
        otherwise rank 0's, decorrelated per rank by a seed drawn from it (deterministic, but
        not what an uninterrupted run of that other world size would have drawn)."""
        ranks = state.get("rng_ranks")
        if self.dist.enabled and ranks is not None and len(ranks) == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank])
            return
        set_rng_state(state["rng"])
        if self.dist.enabled:
            seed_everything(int(torch.randint(2**31, ())) + self.dist.rank)
