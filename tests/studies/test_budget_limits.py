"""Studies end when they should: absurd budgets are refused when the spec loads, slots are
claimed one at a time as trials start (never a billion up front), `budget.timeout` stops new
trials, and a storage password is redacted whatever it holds."""

from __future__ import annotations

import math
import time

import pytest
import yaml

from studies.cli import main
from studies.spec import MAX_TIMEOUT_S, MAX_TRIALS, SpecError, parse_spec
from tests.studies.conftest import MICRO, trials, write_spec


def _spec(**changes):
    tree = yaml.safe_load(yaml.safe_dump(MICRO))
    tree.update(name="b", budget={"n_trials": 2})
    tree.update(changes)
    return tree


@pytest.mark.parametrize(
    ("budget", "key"),
    [
        ({"n_trials": 1.0e9, "timeout": 15}, "budget.n_trials"),
        ({"n_trials": MAX_TRIALS + 1}, "budget.n_trials"),
        ({"n_trials": 0}, "budget.n_trials"),
        ({"n_trials": -3}, "budget.n_trials"),
        ({"timeout": 0}, "budget.timeout"),
        ({"timeout": -1}, "budget.timeout"),
        ({"timeout": math.nan}, "budget.timeout"),
        ({"timeout": math.inf}, "budget.timeout"),
        ({"timeout": -math.inf}, "budget.timeout"),
        ({"timeout": MAX_TIMEOUT_S + 1}, "budget.timeout"),
        ({"n_trials": 4, "timeout": 1e300}, "budget.timeout"),
        ({}, "n_trials"),
    ],
)
def test_absurd_budgets_are_refused_naming_the_key(budget, key):
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(budget=budget), "s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml: ") and key in message and "\n" not in message


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"sampler": {"type": "random", "seed": 2**40}}, "sampler.seed"),
        ({"enqueue": [{}] * 1001}, "enqueue"),
        ({"name": "n" * 101}, "name"),
        ({"sampler": {"type": "random", "seed": -1}}, "sampler.seed"),
        ({"storage": {"heartbeat_interval": 10**12}}, "storage.heartbeat_interval"),
        ({"storage": {"max_retries": 10**9}}, "storage.max_retries"),
        (
            {
                "sampler": {"type": "grid"},
                "space": {"optim.lr.head": {"type": "float", "low": 0, "high": 1, "step": 1e-9}},
            },
            "grid has more than",
        ),
        (
            {"space": {"optim.lr.head": {"type": "float", "low": 0.0, "high": math.inf}}},
            "space.optim.lr.head.high",
        ),
    ],
)
def test_other_unbounded_numbers_are_refused(changes, key):
    with pytest.raises(SpecError, match=key.replace(".", r"\.")) as info:
        parse_spec(_spec(**changes), "s.yaml")
    assert "\n" not in str(info.value)


def test_a_spec_key_holding_a_newline_is_one_line():
    tree = _spec(budget={"n_trials": 2, "ti\nmeout": 1})
    with pytest.raises(SpecError) as info:
        parse_spec(tree, "s.yaml")
    assert "\n" not in str(info.value) and "ti\\nmeout" in str(info.value)


def _claiming_study(tmp_path, n_trials: int, enqueued: int):
    import optuna

    from studies.record import Placement, StudyRecord, write_record
    from studies.spec import parse_spec as parse
    from studies.workers import WorkerArgs

    url = f"sqlite:///{tmp_path}/studies.db"
    spec = parse(_spec(), "s")
    study = optuna.create_study(study_name="claims", storage=url)
    record = StudyRecord(
        "claims", spec, tmp_path, tmp_path / "claims", "sqlite:///m.db", "omnireid", "p", n_trials
    )
    write_record(study, record)
    for _ in range(enqueued):
        study.enqueue_trial({"x": 1.0}, user_attrs={"enqueued": True})
    return study, WorkerArgs("claims", Placement(url)), spec


def test_slots_are_claimed_as_trials_start_not_up_front(tmp_path):
    from optuna.trial import TrialState

    from studies.study import slots_left
    from studies.workers import _claim

    study, args, spec = _claiming_study(tmp_path, n_trials=MAX_TRIALS, enqueued=1)
    assert len(study.trials) == 1 and slots_left(study) == MAX_TRIALS - 1
    first, _ = _claim(args, study, spec, "me")
    assert first.user_attrs.get("enqueued")  # enqueued configs first
    second, running = _claim(args, study, spec, "me")
    assert running and second.number == 1
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.RUNNING, TrialState.RUNNING]  # no WAITING slot was written


def test_the_budget_counts_as_before_and_an_interrupted_trial_gives_its_slot_back(tmp_path):
    from optuna.trial import TrialState

    from studies.study import slots_left
    from studies.workers import _claim

    study, args, spec = _claiming_study(tmp_path, n_trials=3, enqueued=0)
    claimed = [_claim(args, study, spec, "me")[0] for _ in range(3)]
    assert all(t is not None for t in claimed)
    assert _claim(args, study, spec, "me")[0] is None and slots_left(study) == 0
    claimed[0].set_user_attr("interrupted", True)
    study.tell(claimed[0], state=TrialState.FAIL)  # no fail_reason: not counted
    claimed[1].set_user_attr("fail_reason", "bad config")
    study.tell(claimed[1], state=TrialState.FAIL)  # a failure of its own: counted
    assert slots_left(study) == 1
    assert _claim(args, study, spec, "me")[0] is not None
    assert _claim(args, study, spec, "me")[0] is None


@pytest.mark.slow
def test_a_timeout_budget_ends_the_study_at_its_timeout(tmp_path, monkeypatch, study_root):
    """The issue's study (a huge n_trials and a short timeout, here at the new maximum) creates
    no slots up front and starts no trial after its timeout."""
    from studies.record import Placement
    from studies.spec import load_spec
    from studies.study import create
    from studies.workers import WorkerArgs, work

    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "timed", budget={"n_trials": MAX_TRIALS, "timeout": 3})
    spec = load_spec(path)
    storage = f"sqlite:///{tmp_path}/studies.db"
    place = Placement(storage, study_root, f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "ck")
    study = create(spec, place)
    assert len(study.trials) == 0  # nothing enqueued, nothing claimed yet
    start = time.time()
    work(WorkerArgs(spec.name, place))
    got = trials(storage, "timed")
    assert 1 <= len(got) < 50
    assert all(t.datetime_start.timestamp() < start + 3 for t in got)  # none after the timeout
    assert not [t for t in got if t.state.name in ("RUNNING", "WAITING")]


# --------------------------------------------------------------------------------- redaction
SECRET = "p4ss@w0rd/x9z:q%40r"
PIECES = ("p4ss", "w0rd", "x9z", "q%40r", "q@r")
URLS = [
    (f"postgresql://alice:{SECRET}@db.example:5432/studies", PIECES),
    (f"postgresql+psycopg://alice:{SECRET}@host/db", PIECES),
    ("postgresql+psycopg://user:p4sss@ssw0rd/w0rdx@host/db", ("p4sss", "ssw0rd", "w0rdx")),
    ("postgresql://alice:plainpassword@host/db", ("plainpassword",)),
    ("postgresql://host/db?user=alice&password=plainpassword", ("plainpassword",)),
    (f"mysql://alice:{SECRET}@host/db", PIECES),
]


@pytest.mark.parametrize(("url", "pieces"), URLS)
def test_redact_hides_the_whole_password(url, pieces):
    from studies.storage import redact, scrub

    shown = redact(url)
    assert "***" in shown and ("host" in shown or "db.example" in shown)
    # a driver's message may echo the URL, the password or a piece of it
    echoed = scrub(f"could not connect to {url}: near {' '.join(pieces)}", url)
    for piece in pieces:
        assert piece not in shown and piece not in echoed, (piece, shown, echoed)


def test_urls_without_a_password_are_unchanged():
    from studies.storage import redact

    for url in ("sqlite:///studies.db", "sqlite:///a@b:c/x.db", "postgresql://u@h/db"):
        assert redact(url) == url


@pytest.mark.parametrize("url", [URLS[0][0], URLS[2][0]])
def test_an_unreachable_storage_is_one_line_without_its_password(url, capsys):
    url = url.replace("db.example:5432", "127.0.0.1:1").replace("@host/", "@127.0.0.1:1/")
    assert main(["study", "status", "x", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    for piece in ("p4ss", "w0rd", "x9z", "q%40r", "ssw0rd"):
        assert piece not in err, err


def test_the_issues_url_leaks_no_piece_and_gets_a_hint(capsys):
    from studies.storage import scrub

    url = "postgresql+psycopg://user:p@ss/w@host/db"
    said = scrub("failed to resolve host 'ss': Name or service not known (address)", url)
    assert "'***'" in said and "address" in said  # the piece alone, not inside a word
    assert main(["study", "status", "x", "--storage", url.replace("@host", "@127.0.0.1:1")]) == 2
    err = capsys.readouterr().err
    assert "p@ss/w" not in err and "'ss'" not in err and "%-encoded" in err
