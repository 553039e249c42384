"""A study's record: written and read back whole on real Optuna storages, a clear error where a
study has none or an incomplete one, and no other module spelling its user-attr keys."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import yaml

from studies.record import (
    Placement,
    StudyError,
    StudyRecord,
    has_record,
    mark_completed,
    read_record,
    record_from_attrs,
    refresh_record,
    write_record,
)
from studies.spec import parse_spec, spec_to_dict
from tests.studies.conftest import MICRO

REPO = Path(__file__).resolve().parents[2]


def _spec(**changes):
    tree = yaml.safe_load(yaml.safe_dump(MICRO, sort_keys=False))
    tree.update({"name": "rec", "budget": {"n_trials": 3}, **changes})
    return parse_spec(tree, "rec.yaml")


def _record(tmp_path, **changes) -> StudyRecord:
    fields = {
        "name": "rec",
        "spec": _spec(),
        "data_root": tmp_path / "data",
        "checkpoints": tmp_path / "runs" / "rec",
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "experiment": "omnireid",
        "parent_run_id": "0123456789abcdef",
        "n_trials": 3,
    }
    return StudyRecord(**{**fields, **changes})


@pytest.fixture(params=["memory", "sqlite"])
def study(request, tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = None if request.param == "memory" else f"sqlite:///{tmp_path}/studies.db"
    return optuna.create_study(study_name="rec", storage=url)


def test_a_record_reads_back_as_written(study, tmp_path):
    record = _record(tmp_path)
    assert not has_record(study)
    write_record(study, record)
    assert has_record(study) and read_record(study) == record
    assert read_record(study).sampled_keys == ["optim.lr.head", "model.lora.rank"]
    assert read_record(study).base.preset == "micro"


def test_a_time_budget_and_a_completed_study_read_back(study, tmp_path):
    record = _record(tmp_path, n_trials=None)
    write_record(study, record)
    assert read_record(study).n_trials is None and not read_record(study).completed
    mark_completed(study)
    assert read_record(study) == replace(record, completed=True)


def test_a_rerun_grows_the_budget_and_changes_tracking_only(study, tmp_path):
    record = _record(tmp_path)
    write_record(study, record)
    rerun = _spec(budget={"n_trials": 7}, tracking={"log_checkpoints": "all"}, description="x")
    refresh_record(study, rerun)
    got = read_record(study)
    assert got.n_trials == 7 and got.spec.tracking.log_checkpoints == "all"
    assert got.spec.budget.n_trials == 3 and got.spec.description == ""  # the stored spec's
    assert replace(got, n_trials=3, spec=record.spec) == record


def test_where_a_worker_finds_things(tmp_path):
    record = _record(tmp_path)
    assert record.data_for(Placement("s")) == tmp_path / "data"
    assert record.folders_for(Placement("s")) == tmp_path / "runs" / "rec"
    assert record.tracking_for(None) == (f"sqlite:///{tmp_path}/mlflow.db", "omnireid")
    mine = Placement("s", tmp_path / "d2", "http://mlflow:5000", tmp_path / "c2", "other")
    assert record.data_for(mine) == tmp_path / "d2"
    assert record.folders_for(mine) == tmp_path / "c2" / "rec"
    assert record.tracking_for(mine.tracking_uri) == ("http://mlflow:5000", "omnireid")


def test_a_study_without_a_record_is_one_clear_error(study):
    study.set_user_attr("note", "made by hand")
    with pytest.raises(StudyError, match=r"study 'rec' in X was not made by `reid study`"):
        read_record(study, " in X")


def test_an_incomplete_record_names_the_study_and_the_missing_key(tmp_path):
    study = optuna.create_study(study_name="rec")
    record = _record(tmp_path)
    write_record(study, record)  # not completed: every key it wrote is required
    attrs = dict(study.user_attrs)
    for key in attrs:
        partial = {k: v for k, v in attrs.items() if k != key}
        if attrs[key] == spec_to_dict(record.spec):
            with pytest.raises(StudyError, match=r"^study 'rec' was not made by `reid study`$"):
                record_from_attrs("rec", partial)
        else:
            with pytest.raises(StudyError, match=rf"^study 'rec': its record has no '{key}' "):
                record_from_attrs("rec", partial)


def test_load_names_the_study_and_its_storage_when_reid_study_did_not_make_it(tmp_path):
    from studies.study import load

    url = f"sqlite:///{tmp_path}/studies.db"
    optuna.create_study(study_name="plain", storage=url)
    with pytest.raises(StudyError) as info:
        load("plain", url)
    assert str(info.value) == f"study 'plain' in {url} was not made by `reid study`"


# ------------------------------------------------------------------------------ one owner
_SOURCES = ("studies", "experiments", "bench")
_OWNER = REPO / "studies" / "record.py"


def _lines():
    for folder in _SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            if path != _OWNER:
                for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    yield f"{path.relative_to(REPO)}:{n}", line


def test_no_other_module_reads_or_writes_a_study_s_user_attrs():
    direct = re.compile(r"\b\w*(study|probe)\.(user_attrs|set_user_attr)\b")
    offenders = [f"{where}: {line.strip()}" for where, line in _lines() if direct.search(line)]
    assert not offenders, "study user attrs outside studies/record.py:\n" + "\n".join(offenders)


def test_no_other_module_spells_a_user_attr_key(tmp_path):
    """Study keys (read from a written record) never sit beside a user-attr access outside
    record.py, and trial keys are `TrialAttr` names, not literals."""
    study = optuna.create_study(study_name="rec")
    write_record(study, _record(tmp_path))
    mark_completed(study)
    keys = "|".join(map(re.escape, study.user_attrs))
    study_key = re.compile(rf"""user_attr.*["']({keys})["']|["']({keys})["'].*user_attr""")
    literal = re.compile(r"""(user_attrs(\[|\.get\()|set_user_attr\(|user_attrs=\{)\s*["']""")
    offenders = [
        f"{where}: {line.strip()}"
        for where, line in _lines()
        if study_key.search(line) or literal.search(line)
    ]
    assert not offenders, "user-attr keys spelled outside studies/record.py:\n" + "\n".join(
        offenders
    )
