"""Workers: claim a trial slot, train it with a heartbeat, tell Optuna, repeat to the budget.

`reid study run` spawns N local worker processes (spawn-safe: this module imports neither torch
nor mlflow at import time); `reid study worker` is one worker in the current process, what a
second machine runs. A worker whose process dies stops heart-beating; after the grace period
another worker fails its trial and Optuna's `RetryHeartbeatStaleTrialCallback` queues a retry,
which resumes from the dead trial's last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studies import interrupt, optuna_private
from studies.record import Placement, StudyRecord, TrialAttr, mark_completed, read_record
from studies.storage import DurableTrial, redact, retry_db, study_lock

log = logging.getLogger("omnireid.study")


@dataclass(frozen=True)
class WorkerArgs:
    """Plain, picklable arguments of one worker process: the study, where it is and what the
    command line placed (`placement`; what it leaves out comes from the study's record)."""

    study: str
    placement: Placement
    index: int = 0
    threads: int | None = None
    gpu: str | None = None
    log_file: str | None = None
    deadline: float | None = None  # time.time() after which no new trial starts


def worker_main(args: WorkerArgs) -> int:
    """Entry of a spawned worker process: placement first (before torch is imported)."""
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu
    if args.log_file:
        _redirect(Path(args.log_file))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    interrupt.install()
    try:
        return work(args)
    except KeyboardInterrupt:
        return 130


def _redirect(path: Path) -> None:
    """Send this process's output (Python's and C libraries') to `path`."""
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)


def _context(args: WorkerArgs, record: StudyRecord) -> Any:
    from experiments.store import open_store
    from studies.trial import StudyContext

    place = args.placement
    return StudyContext(
        record=record,
        storage_label=redact(place.storage),
        data_root=record.data_for(place),
        checkpoints=record.folders_for(place),
        store=open_store(*record.tracking_for(place.tracking_uri)),
        gpu=args.gpu,
    )


def work(args: WorkerArgs) -> int:
    """Run trials of `args.study` until no slot is left and no other trial may need a retry, or
    until the budget's timeout (a trial running then is finished; no new one starts)."""
    from studies.study import load

    study, spec, storage = load(args.study, args.placement.storage, worker=args.index)
    ctx = _context(args, read_record(study))
    me = f"{socket.gethostname()}:{os.getpid()}"
    wait = min(5.0, float(spec.storage.heartbeat_interval))
    deadline = args.deadline
    if deadline is None and spec.budget.timeout is not None:  # `reid study worker`
        deadline = time.time() + spec.budget.timeout
    while deadline is None or time.time() < deadline:
        interrupt.check()  # a SIGINT whose KeyboardInterrupt was lost: no new trial
        trial, others_running = retry_db(_claim, args, study, spec, me)
        if trial is None:
            if not others_running:
                break
            # a running trial may die and need a retry; never sleep past the deadline
            time.sleep(wait if deadline is None else max(0.0, min(wait, deadline - time.time())))
            continue
        _run(ctx, study, storage, trial)
        update_parent(ctx.store, study, spec, ctx.storage_label)
    retry_db(finalize, ctx.store, args.placement.storage, study, spec)
    return 0


def _claim(args: WorkerArgs, study: Any, spec: Any, me: str) -> tuple[Any, bool]:
    """Under the study lock: fail stale trials (their retries become WAITING), then take the
    oldest waiting trial (an enqueued config or a retry), else a new one while the budget has
    slots left. Without `n_trials` (a timeout budget) a new trial is always there."""
    import optuna
    from optuna.trial import TrialState

    from studies.study import slots_left

    with study_lock(args.placement.storage, args.study), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna warns that heartbeats are meant for `optimize`: this loop beats itself.
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        waiting = any(t.state is TrialState.WAITING for t in trials)
        running = any(t.state is TrialState.RUNNING for t in trials)
        if not waiting and slots_left(study) == 0:
            return None, running
        trial = study.ask()  # the oldest WAITING trial, else a new one (claiming a slot)
        trial.set_user_attr(TrialAttr.WORKER, me)
        return trial, running


def _run(ctx: Any, study: Any, storage: Any, trial: Any) -> None:
    from optuna.trial import TrialState

    from studies.trial import run_trial

    trials = retry_db(study.get_trials, deepcopy=False)
    frozen = next(t for t in trials if t.number == trial.number)
    log.info("trial %d started: %s", trial.number, dict(frozen.params) or "sampling")
    try:
        with heartbeat(storage, trial):
            result = run_trial(ctx, DurableTrial(trial), frozen)
    except KeyboardInterrupt:
        trial.set_user_attr(TrialAttr.INTERRUPTED, True)
        study.tell(trial, state=TrialState.FAIL)
        log.info("trial %d interrupted", trial.number)
        raise
    if result.state == "complete":
        retry_db(study.tell, trial, result.values)
    elif result.state == "pruned":
        retry_db(study.tell, trial, state=TrialState.PRUNED)
    else:
        retry_db(study.tell, trial, state=TrialState.FAIL)
    log.info("trial %d %s %s", trial.number, result.state, result.values or result.reason or "")


@contextlib.contextmanager
def heartbeat(storage: Any, trial: Any) -> Iterator[None]:
    """Record the trial's heartbeat now and every `heartbeat_interval` seconds while inside
    (a thread: the training loop is never interrupted for it)."""
    interval = getattr(storage, "heartbeat_interval", None)
    if not interval:
        yield
        return
    trial_id = optuna_private.trial_id(trial)
    storage.record_heartbeat(trial_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a brief database outage: try next beat
                storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def update_parent(store: Any, study: Any, spec: Any, storage: str) -> None:
    """Best trial so far (metrics, link) and trial counts on the parent run."""
    from studies import study_ui

    with contextlib.suppress(Exception):  # a summary: never lose a trial over it
        study_ui.update_parent(store, study, spec, storage)


def keep_best_artifacts(store: Any, study: Any, spec: Any) -> None:
    """`tracking.log_checkpoints` best or none: the best trial's run gets its pyfunc model (what
    `reid study best --promote` registers) and, for best, its checkpoint, from its run folder."""
    from experiments.run_folder import log_from_folder
    from studies.report import best_trial

    policy, best = spec.tracking.log_checkpoints, best_trial(study, spec)
    if policy == "all" or best is None or not best.user_attrs.get(TrialAttr.RUN_ID):
        return
    run_dir = Path(best.user_attrs.get(TrialAttr.RUN_DIR, ""))
    try:
        done = log_from_folder(store, best.user_attrs[TrialAttr.RUN_ID], run_dir,
                               checkpoint=policy == "best", model=True)  # fmt: skip
    except Exception as exc:  # the study still completes; `--promote` tries again
        log.warning("best trial %d: its model was not logged (%s)", best.number, exc)
        return
    if done:
        log.info("best trial %d: logged %s", best.number, ", ".join(done))


def finalize(store: Any, storage_url: str, study: Any, spec: Any) -> bool:
    """When the budget is met and nothing runs: the best trial's model (and checkpoint), study
    plots on the parent run, which ends FINISHED (once, whichever worker gets here first).
    Returns whether the study is complete."""
    from optuna.trial import TrialState

    from experiments.runs import end_run, log_files, run_status
    from studies.report import study_plots
    from studies.study import budget_met

    with study_lock(storage_url, study.study_name):
        record = read_record(study)
        if record.completed:
            return True
        active = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        if active or not budget_met(study):
            return False
        parent = record.parent_run_id
        keep_best_artifacts(store, study, spec)
        update_parent(store, study, spec, redact(storage_url))
        if run_status(store, parent) == "RUNNING":
            log_files(store, parent, study_plots(study), "study")
            end_run(store, parent, "FINISHED")
        mark_completed(study)
        return True
