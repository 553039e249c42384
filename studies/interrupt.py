"""A worker's Ctrl-C (SIGINT), seen even when Python drops the KeyboardInterrupt.

Python raises KeyboardInterrupt wherever the main thread is when the signal arrives; raised
inside a garbage-collection callback (SQLAlchemy's weakref finalisers, for one) it is printed as
"Exception ignored" and lost, and the worker then ran its trials to the budget. The handler here
also records the signal, and the worker checks the record at safe points: after each training
step (`StopCheck`) and before claiming a trial.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from reid_core.training.callbacks import Callback

_STOP = threading.Event()


def _on_sigint(signum: int, frame: Any) -> None:
    _STOP.set()
    raise KeyboardInterrupt


def install() -> None:
    """Record SIGINT as well as raising on it; an ignored SIGINT (a background job) stays
    ignored."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def check() -> None:
    """Raise KeyboardInterrupt if a SIGINT arrived (whether or not its first raise was lost)."""
    if _STOP.is_set():
        raise KeyboardInterrupt


class StopCheck(Callback):
    """A trial's training stops at the step after a SIGINT, even one whose raise was lost."""

    def on_step_end(self, trainer: Any, step: int, logs: dict[str, float]) -> None:
        check()
