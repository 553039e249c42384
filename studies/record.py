"""What a study stores about itself, as one typed record; the only module that reads or writes
a study's user attrs.

Whoever creates a study writes its record once (`studies.study.create`): the spec (with the
sampled keys and the base config), the data root, the trial run folders, the MLflow tracking
URI, experiment and parent run, and the budget: everything a worker on another machine needs,
so `reid study worker NAME --storage URL` is all it runs. Later only the budget and the spec's
`tracking` section change (a rerun: `refresh_record`), and `completed` (`mark_completed`).
The key strings below are stored in every study's database: renaming one orphans old studies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_core.errors import ReidError
from studies.spec import BaseConfig, StudySpec, parse_spec, spec_to_dict

_SPEC = "spec"  # written last: a study without it has no record (yet)
_DATA_ROOT = "data_root"
_CHECKPOINTS = "checkpoints"
_TRACKING_URI = "tracking_uri"
_EXPERIMENT = "experiment"
_PARENT = "mlflow_parent_run_id"
_N_TRIALS = "n_trials"
_COMPLETED = "completed"
_REQUIRED = (_DATA_ROOT, _CHECKPOINTS, _TRACKING_URI, _EXPERIMENT, _PARENT, _N_TRIALS)


class StudyError(ReidError):
    """A study cannot be created, found or continued."""


class TrialAttr:
    """The user attrs a trial carries (shown by optuna-dashboard, read by `reid study status`)."""

    WORKER = "worker"  # host:pid of the worker that claimed it
    RUN_ID = "mlflow_run_id"  # its MLflow run
    RUN_DIR = "run_dir"  # its run folder: checkpoints, metrics.json
    EPOCH = "epoch"  # epochs done so far
    VAL_SCORE = "val_score"  # the latest val score
    TEST_SCORE = "test_score"  # scored once, when its training finished
    FAIL_REASON = "fail_reason"  # a failure of its own: it counts against the budget
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM: its slot is given back
    RESUMED_FROM_EPOCH = "resumed_from_epoch"  # a retry's first epoch
    ENQUEUED = "enqueued"  # one of the spec's `enqueue` configs


@dataclass(frozen=True)
class Placement:
    """Where a study keeps things, as given on the command line (None: from the study's record)."""

    storage: str
    data_root: Path | None = None
    tracking_uri: str | None = None
    checkpoints: Path | None = None  # the folder that holds each study's run folders
    experiment: str = "omnireid"


@dataclass(frozen=True)
class StudyRecord:
    """What a study stores about itself (`name` is the study's; the rest its user attrs)."""

    name: str
    spec: StudySpec
    data_root: Path
    checkpoints: Path  # this study's trial run folders, readable by every worker
    tracking_uri: str
    experiment: str
    parent_run_id: str  # the study's MLflow run; each trial's run is nested under it
    n_trials: int | None  # the budget now (a rerun may raise it); None: a budget of time
    completed: bool = False

    @property
    def sampled_keys(self) -> list[str]:
        """The dotted config keys the study samples, in spec order."""
        return list(self.spec.space)

    @property
    def base(self) -> BaseConfig:
        """The preset or config file and overrides every trial starts from."""
        return self.spec.base

    def data_for(self, place: Placement) -> Path:
        """The data root a worker reads: the command line's, else the study's."""
        return Path(place.data_root or self.data_root)

    def folders_for(self, place: Placement) -> Path:
        """The trial run folders a worker writes: under the command line's folder, else the
        study's."""
        return place.checkpoints / self.name if place.checkpoints else self.checkpoints

    def tracking_for(self, tracking_uri: str | None) -> tuple[str, str]:
        """The MLflow tracking URI (the command line's, else the study's) and experiment."""
        return tracking_uri or self.tracking_uri, self.experiment


# ---------------------------------------------------------------------------------- reading
def has_record(study: Any) -> bool:
    """Whether `study` (an Optuna study) was made, completely, by `reid study`."""
    return _SPEC in study.user_attrs


def read_record(study: Any, where: str = "") -> StudyRecord:
    """The record of an Optuna study; `where` (e.g. " in sqlite:///studies.db") goes into the
    StudyError raised when the study has none or an incomplete one."""
    return record_from_attrs(study.study_name, study.user_attrs, where)


def record_from_attrs(name: str, attrs: Mapping[str, Any], where: str = "") -> StudyRecord:
    """The record in the user attrs `attrs` of study `name` (as a storage returns them)."""
    if _SPEC not in attrs:
        raise StudyError(f"study {name!r}{where} was not made by `reid study`")
    missing = [key for key in _REQUIRED if key not in attrs]
    if missing:
        raise StudyError(
            f"study {name!r}{where}: its record has no {', '.join(map(repr, missing))} "
            "(made by an older or interrupted `reid study create`); create it anew"
        )
    n_trials = attrs[_N_TRIALS]
    return StudyRecord(
        name=name,
        spec=parse_spec(attrs[_SPEC], f"study {name} spec"),
        data_root=Path(attrs[_DATA_ROOT]),
        checkpoints=Path(attrs[_CHECKPOINTS]),
        tracking_uri=str(attrs[_TRACKING_URI]),
        experiment=str(attrs[_EXPERIMENT]),
        parent_run_id=str(attrs[_PARENT]),
        n_trials=None if n_trials is None else int(n_trials),
        completed=bool(attrs.get(_COMPLETED, False)),
    )


# ---------------------------------------------------------------------------------- writing
def write_record(study: Any, record: StudyRecord) -> None:
    """Store `record` in a new study's user attrs; the spec last, so a study whose creation was
    cut short has no record and its next `create` writes one."""
    attrs: dict[str, Any] = {
        _DATA_ROOT: str(record.data_root),
        _CHECKPOINTS: str(record.checkpoints),
        _TRACKING_URI: record.tracking_uri,
        _EXPERIMENT: record.experiment,
        _N_TRIALS: record.n_trials,
        _PARENT: record.parent_run_id,
    }
    if record.completed:
        attrs[_COMPLETED] = True
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    study.set_user_attr(_SPEC, spec_to_dict(record.spec))


def refresh_record(study: Any, spec: StudySpec) -> None:
    """A rerun with the same spec: its budget (which may grow) and its `tracking` section (what
    the runs store) replace the stored ones; the rest of the stored spec stays."""
    stored = study.user_attrs[_SPEC]
    study.set_user_attr(_N_TRIALS, spec.budget.n_trials)
    study.set_user_attr(_SPEC, {**stored, "tracking": spec_to_dict(spec)["tracking"]})


def mark_completed(study: Any) -> None:
    """The budget is met and the parent run ended: no worker finalizes the study again."""
    study.set_user_attr(_COMPLETED, True)
