"""`train.compile`: the model's repeated blocks through `torch.compile`, with a way back.

What is compiled: each vision block (the bulk of the FLOPs and of the operators), the semantic
separation and the fusion rows. Shapes change from step to step (modality dropout changes how
many images of each modality a batch holds), so they are compiled with dynamic shapes; CUDA
graphs (`mode="reduce-overhead"`) need fixed shapes and are not used. docs/BENCHMARKS.md gives
the measured effect. Where compiling cannot work (no C++ compiler, an unsupported operator) the
engine says so in one line and trains eager (`Compiled.undo`).
"""

from __future__ import annotations

from typing import Any

import torch

# exceptions torch.compile raises when it cannot compile; anything else is a real error
try:
    from torch._dynamo.exc import BackendCompilerFailed, TorchRuntimeError, Unsupported

    COMPILE_ERRORS: tuple[type[BaseException], ...] = (
        BackendCompilerFailed,
        TorchRuntimeError,
        Unsupported,
    )
except ImportError:  # pragma: no cover - a torch without dynamo
    COMPILE_ERRORS = ()


class Compiled:
    """The compiled callables installed on a model; `undo` puts the eager ones back."""

    def __init__(self, model: Any) -> None:
        self.targets: list[tuple[Any, str]] = []
        for block in model.backbone.blocks:
            self._install(block, "forward")
        self._install(model.separation, "forward")
        self._install(model.fusion, "rows")

    def _install(self, owner: Any, name: str) -> None:
        setattr(owner, name, torch.compile(getattr(owner, name), dynamic=True))
        self.targets.append((owner, name))

    def undo(self) -> None:
        """Back to eager: the instance attributes shadowing the methods go."""
        for owner, name in self.targets:
            owner.__dict__.pop(name, None)
        self.targets.clear()
        torch._dynamo.reset()
