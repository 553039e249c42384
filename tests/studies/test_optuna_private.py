"""The private Optuna names `studies.optuna_private` reaches, pinned to the installed Optuna:
a new Optuna version fails here first, loudly, instead of in a worker on another machine."""

from __future__ import annotations

import optuna
import pytest

from studies import optuna_private
from studies.optuna_private import CHECKED_WITH, set_trial_user_attr, study_id, trial_id


def test_the_installed_optuna_is_the_one_the_private_names_were_checked_with():
    installed = ".".join(optuna.__version__.split(".")[:2])
    assert installed == CHECKED_WITH, (
        f"Optuna {optuna.__version__} is installed; the private names were checked with "
        f"{CHECKED_WITH}; re-check studies/optuna_private.py, then update CHECKED_WITH"
    )


@pytest.fixture(params=["memory", "sqlite"])
def storage(request, tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return None if request.param == "memory" else f"sqlite:///{tmp_path}/private.db"


def test_the_private_attributes_exist_where_the_module_reads_them(storage):
    study = optuna.create_study(study_name="p", storage=storage)
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    for obj, name in ((trial, "_trial_id"), (frozen, "_trial_id"), (study, "_study_id")):
        assert hasattr(obj, name), f"{type(obj).__name__}.{name} moved; see optuna_private.py"
    assert hasattr(study, "_storage"), "Study._storage moved; see optuna_private.py"
    assert callable(getattr(study._storage, "set_trial_user_attr", None))


def test_the_ids_are_the_storage_keys(storage):
    first = optuna.create_study(study_name="a", storage=storage)
    second = optuna.create_study(study_name="b", storage=first._storage)
    trials = [first.ask(), first.ask()]
    assert study_id(first) == first._storage.get_study_id_from_name("a")
    assert study_id(second) == first._storage.get_study_id_from_name("b") != study_id(first)
    for trial in trials:
        frozen = first._storage.get_trial(trial_id(trial))
        assert frozen.number == trial.number and trial_id(frozen) == trial_id(trial)


def test_a_user_attr_reaches_a_trial_this_process_did_not_ask_for(storage):
    study = optuna.create_study(study_name="p", storage=storage)
    study.ask()  # as if another worker held it
    (frozen,) = study.get_trials(deepcopy=False)
    set_trial_user_attr(study, frozen, "interrupted", True)
    (after,) = study.get_trials(deepcopy=False)
    assert after.user_attrs == {"interrupted": True} and after.state.name == "RUNNING"


def test_no_other_module_reaches_the_private_names():
    from pathlib import Path

    root = Path(optuna_private.__file__).resolve().parents[1]
    private = ("._trial_id", "._study_id", "._storage")
    offenders = [
        f"{path.relative_to(root)}: {name}"
        for folder in ("studies", "experiments", "bench")
        for path in sorted((root / folder).rglob("*.py"))
        if path.name != "optuna_private.py"
        for name in private
        if name in path.read_text(encoding="utf-8")
    ]
    assert not offenders, f"Optuna private names outside studies/optuna_private.py: {offenders}"
