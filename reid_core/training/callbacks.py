"""Engine callbacks: no-op hooks, the only way into the training loop (fast-reid hooks style).

The engine imports this module, never the reverse: a hook's `trainer` is typed `Trainer`, an
alias of `Any` here, and a callback that reads the trainer's attributes imports
`reid_core.training.engine.Trainer` itself (the stock ones in `hooks` do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Trainer = Any  # reid_core.training.engine.Trainer, without importing it (no import circle)


class Callback:
    """Override what you need. `trainer.request_stop(reason)` ends training after the step."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None: ...

    def on_evaluate(
        self, trainer: Trainer, epoch: int, split: str, metrics: dict[str, Any]
    ) -> None: ...

    def on_train_end(self, trainer: Trainer, status: str) -> None:
        """`status`: `finished`, `stopped` (a stop request), `failed` or `interrupted`."""


class CallbackList(Callback):
    """Fans every hook out to its callbacks, in order."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_train_start(trainer)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(trainer, epoch)

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_step_end(trainer, step, logs)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(trainer, epoch, logs)

    def on_evaluate(self, trainer: Trainer, epoch: int, split: str, metrics: dict[str, Any]):
        for cb in self.callbacks:
            cb.on_evaluate(trainer, epoch, split, metrics)

    def on_train_end(self, trainer: Trainer, status: str) -> None:
        for cb in self.callbacks:
            cb.on_train_end(trainer, status)
