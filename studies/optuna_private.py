"""The few private Optuna names the studies need, reached here and nowhere else.

Optuna keys trials and studies in its storage by ids that `Trial`, `FrozenTrial` and `Study` do
not expose publicly, and has no public call that sets a user attr on a trial another process
owns. `tests/studies/test_optuna_private.py` checks these names on the installed Optuna and
fails, naming `CHECKED_WITH`, when its version moves: re-check this module, then the constant.
"""

from __future__ import annotations

from typing import Any

CHECKED_WITH = "5.1"  # the Optuna major.minor these names were read from


def trial_id(trial: Any) -> int:
    """The storage's id of a `Trial` or `FrozenTrial` (what heartbeats are recorded under)."""
    return int(trial._trial_id)


def study_id(study: Any) -> int:
    """The storage's id of a `Study` (optuna-dashboard's URLs use it)."""
    return int(study._study_id)


def set_trial_user_attr(study: Any, trial: Any, key: str, value: Any) -> None:
    """Set a user attr on `trial` (a `FrozenTrial`, e.g. one a dead worker left RUNNING), which
    `Trial.set_user_attr` cannot reach from outside the process that asked for it."""
    study._storage.set_trial_user_attr(trial_id(trial), key, value)
