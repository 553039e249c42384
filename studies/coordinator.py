"""`reid study run`: create or resume the study, spawn the local workers, watch them.

Workers are spawned processes (the same on Linux, macOS and Windows), each with cores / N torch
threads or one GPU. The coordinator shows the trials (a live table on a terminal, one line per
trial event otherwise) and owns the clean stop: on Ctrl-C (or SIGTERM) it passes the interrupt
on, waits for the workers to close their trials, and marks whatever they left RUNNING as
failed (interrupted), so the same command later continues to the budget.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import click

from studies.record import Placement, TrialAttr, read_record
from studies.spec import StudySpec

_POLL_S = 2.0
_STOP_GRACE_S = 60.0


def run_study(
    spec: StudySpec, place: Placement, *, workers: int = 1, gpus: list[str] | None = None
) -> int:
    from experiments.tracking import sigterm_as_interrupt
    from studies.storage import redact
    from studies.study import create
    from studies.study_ui import printed_links

    study = create(spec, place)
    record = read_record(study)
    n = len(gpus) if gpus else workers
    logs = record.checkpoints / "logs"
    click.echo(
        f"study {spec.name} in {redact(place.storage)}: {n} worker(s), logs in {logs}; "
        f"MLflow parent run {record.parent_run_id}"
    )
    click.echo(printed_links(study, spec, place.tracking_uri)[0])
    procs = _spawn(spec, place, n, gpus, logs)
    code = 0
    try:
        with sigterm_as_interrupt():
            _watch(study, spec, procs)
    except KeyboardInterrupt:
        click.echo("interrupted: stopping the workers", err=True)
        _stop(procs)
        _mark_interrupted(study, place, procs)
        code = 130
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None, 130, -signal.SIGINT)]
    if failed and code == 0:
        click.echo(f"error: {len(failed)} worker(s) exited with {failed}; see {logs}", err=True)
        code = 1
    _closing(study, spec, place)
    return code


def _spawn(
    spec: StudySpec, place: Placement, n: int, gpus: list[str] | None, logs: Path
) -> list[Any]:
    from studies.workers import WorkerArgs

    deadline = time.time() + spec.budget.timeout if spec.budget.timeout else None
    base = WorkerArgs(study=spec.name, placement=place, deadline=deadline)
    return spawn_workers(base, n, gpus, logs)


def spawn_workers(base: Any, n: int, gpus: list[str] | None, logs: Path, first: int = 0) -> list:
    """`n` worker processes from the `WorkerArgs` `base` (one per entry of `gpus` when given: a
    device listed twice runs two workers on it), each with cores / n torch threads (a GPU
    worker's threads load its data); worker i logs to `logs/worker-i.log`."""
    import dataclasses

    from studies.workers import worker_main

    threads = max(1, (os.cpu_count() or 1) // n)
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i in range(n):
        args = dataclasses.replace(
            base,
            index=first + i,
            threads=threads,
            gpu=gpus[i] if gpus else None,
            log_file=str(logs / f"worker-{first + i}.log"),
        )
        proc = ctx.Process(target=worker_main, args=(args,), name=f"reid-worker-{first + i}")
        proc.start()
        procs.append(proc)
    return procs


def _watch(study: Any, spec: StudySpec, procs: list[Any]) -> None:
    from studies.live import TrialView
    from studies.storage import retry_db

    with TrialView(spec) as view:
        while any(p.is_alive() for p in procs):
            view.update(retry_db(study.get_trials, deepcopy=False))
            time.sleep(_POLL_S)
        view.update(retry_db(study.get_trials, deepcopy=False))


def _stop(procs: list[Any]) -> None:
    """SIGINT to every live worker (a terminal's Ctrl-C reached them already), then wait;
    a worker that does not stop in time is terminated."""
    for p in procs:
        if p.is_alive() and p.pid and os.name != "nt":
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGINT)
    end = time.monotonic() + _STOP_GRACE_S
    for p in procs:
        p.join(timeout=max(0.1, end - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=10)


def _mark_interrupted(study: Any, place: Placement, procs: list[Any]) -> None:
    """Trials our workers left RUNNING (a worker killed before it could tell): FAIL, tagged
    interrupted, their MLflow runs KILLED. Other machines' trials are left alone."""
    from optuna.trial import TrialState

    from experiments.runs import kill_run
    from experiments.store import open_store
    from studies.optuna_private import set_trial_user_attr

    pids = {str(p.pid) for p in procs}
    store = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if str(t.user_attrs.get(TrialAttr.WORKER, "")).rsplit(":", 1)[-1] not in pids:
            continue
        set_trial_user_attr(study, t, TrialAttr.INTERRUPTED, True)  # another process's trial
        study.tell(t.number, state=TrialState.FAIL)
        run_id = t.user_attrs.get(TrialAttr.RUN_ID)
        if run_id:
            store = store or open_store(*read_record(study).tracking_for(place.tracking_uri))
            kill_run(store, run_id)


def _closing(study: Any, spec: StudySpec, place: Placement) -> None:
    from studies.report import status
    from studies.study_ui import printed_links

    st = status(study, spec)
    states = ", ".join(f"{v} {k.lower()}" for k, v in st["states"].items() if v)
    click.echo(f"study {spec.name}: {states or 'no trials'}")
    best = st["best"]
    if best is not None:
        test = best["test_score"]
        test_text = "-" if test is None else f"{test:.4f}"
        click.echo(
            f"best trial {best['number']}: {spec.objective.metric} {best['value']} "
            f"(test score {test_text}), params {best['params']}"
        )
    for line in printed_links(study, spec, place.tracking_uri):
        click.echo(line)
    if not st["completed"]:
        n = st["n_trials"]
        click.echo(f"the budget ({n} trials) is not met yet: run the same command to continue")
