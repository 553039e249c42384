"""How fast a training step is, measured by the run itself (`train.profile`, `reid train
--profile`): `profile.json` in the run folder and a torch.profiler trace beside it.

A window of steps after a warm-up is timed (median step time, samples/s, the share of time spent
waiting for the loader), one step runs under `StepCounter` (aten operators dispatched, forward
through optimizer, views included, and the calls that make a GPU wait for the host), one under
torch's FLOP counter (for the model-FLOPs utilisation against a matmul peak measured in the same
process), and two under torch.profiler (the trace; Perfetto and TensorBoard open it).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

PROFILE_FILE = "profile.json"
TRACE_FILE = "profile_trace.json"
WARMUP, TIMED = 3, 10

# Python-level calls that read device memory on the host: on a GPU each one waits for the
# device to finish everything queued before it
_SYNC_CALLS = frozenset(
    {"item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__", "__index__"}
)
# aten operators that do the same from inside other calls
_SYNC_OPS = frozenset({"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select"})


def _bool_index(args: Any) -> bool:
    """Whether an indexing call's index holds a boolean mask (it runs `nonzero` inside)."""
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, tuple | list) else (index,)
    return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in items)


class _Calls(TorchFunctionMode):
    def __init__(self, counter: StepCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _SYNC_CALLS or (name in ("__getitem__", "__setitem__") and _bool_index(args)):
            self.counter.syncs[name] += 1
        return func(*args, **(kwargs or {}))


class _Ops(TorchDispatchMode):
    def __init__(self, counter: StepCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.counter.ops[name] += 1
        if name in _SYNC_OPS or (name.startswith("aten.index") and _bool_index(args)):
            self.counter.syncs[name] += 1
        return func(*args, **(kwargs or {}))


class StepCounter:
    """Counts, while active, every aten operator dispatched (`ops`, views included; backward ops
    too, which autograd runs on the calling thread on CPU) and every host-synchronising call
    (`syncs`: `.item()`, `bool()`, `int()`, `float()` and `.tolist()` of tensors, `nonzero`,
    boolean-mask indexing, copies to the host)."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.syncs: Counter[str] = Counter()

    @contextlib.contextmanager
    def counting(self) -> Iterator[StepCounter]:
        with _Calls(self), _Ops(self):
            yield self

    @property
    def total_ops(self) -> int:
        return sum(self.ops.values())

    @property
    def total_syncs(self) -> int:
        return sum(self.syncs.values())


def matmul_peak(device: torch.device, dtype: torch.dtype | None = None, n: int = 2048) -> float:
    """Best-of-3 FLOP/s of an n^3 matmul on `device` (bf16 on CUDA, fp32 on CPU), after a
    warm-up: the peak the MFU is measured against."""
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(4):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        if i:
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepProfiler:
    """The engine's profiler: which steps it measures (`phase`), how (`measure`), and the report
    (`finish`, written to `out/profile.json`)."""

    def __init__(self, out: Path, device: torch.device, warmup: int = WARMUP, timed: int = TIMED):
        self.out, self.device = Path(out), device
        self.phases = ["warmup"] * warmup + ["time"] * timed + ["count", "flops", "trace", "trace"]
        self.step_s: list[float] = []
        self.wait_s: list[float] = []
        self.samples: list[int] = []
        self.counter = StepCounter()
        self.flops = 0
        self._trace: Any = None
        self.done = False

    def phase(self, index: int) -> str | None:
        """The phase of the run's `index`-th step (None: not profiled)."""
        return self.phases[index] if index < len(self.phases) and not self.done else None

    @contextlib.contextmanager
    def measure(self, phase: str, wait_s: float, samples: int) -> Iterator[None]:
        if phase == "count":
            with self.counter.counting():
                yield
            return
        if phase == "flops":
            from torch.utils.flop_counter import FlopCounterMode

            from reid_core.model.summary import CPU_ATTENTION_FLOPS

            with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as flops:
                yield
            self.flops = int(flops.get_total_flops())
            return
        if phase == "trace":
            self._start_trace()  # stopped and written by `finish`
            yield
            return
        _sync(self.device)
        start = time.perf_counter()
        yield
        _sync(self.device)
        if phase == "time":
            self.step_s.append(time.perf_counter() - start)
            self.wait_s.append(wait_s)
            self.samples.append(samples)

    def _start_trace(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        if self._trace is None:
            activities = [ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(ProfilerActivity.CUDA)
            self._trace = profile(activities=activities)
            self._trace.__enter__()

    def finish(self) -> dict[str, Any]:
        """Write `profile.json` (and the trace); returns the report."""
        trace = None
        if self._trace is not None:
            self._trace.__exit__(None, None, None)
            trace = self.out / TRACE_FILE
            self._trace.export_chrome_trace(str(trace))
        step = statistics.median(self.step_s) if self.step_s else None
        busy = sum(self.step_s) + sum(self.wait_s)
        peak = matmul_peak(self.device) if self.flops else None
        report = {
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "steps_timed": len(self.step_s),
            "samples_per_s": sum(self.samples) / sum(self.step_s) if self.step_s else None,
            "step_ms": 1000 * step if step else None,
            "data_wait_share": sum(self.wait_s) / busy if busy else None,
            "host_syncs_per_step": self.counter.total_syncs,
            "ops_per_step": self.counter.total_ops,
            "host_sync_calls": dict(self.counter.syncs.most_common(10)),
            "flops_per_step": self.flops or None,
            "peak_flops": peak,
            "mfu": self.flops / step / peak if step and peak and self.flops else None,
            "trace": trace.name if trace is not None else None,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / PROFILE_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
        self.done = True
        return report
