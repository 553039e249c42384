"""A worker's SIGINT is recorded, so a KeyboardInterrupt that Python dropped still stops it."""

from __future__ import annotations

import os
import signal
import time

import pytest

from studies import interrupt


@pytest.fixture
def sigint():
    old = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, old)
    interrupt._STOP.clear()


def test_a_sigint_whose_raise_was_swallowed_still_stops_at_the_next_step(sigint):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupt.install()
    interrupt.check()  # nothing yet
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
    except KeyboardInterrupt:
        pass  # lost, as when it is raised inside a garbage-collection callback
    with pytest.raises(KeyboardInterrupt):
        interrupt.StopCheck().on_step_end(None, 0, {})
    with pytest.raises(KeyboardInterrupt):
        interrupt.check()


def test_an_ignored_sigint_stays_ignored(sigint):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupt.install()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
