"""The `reid` entry point: assembles every layer's commands and turns user errors into one line;
and `reid study ...`: create, run, join, watch, pick the best of and look at Optuna studies.

Optuna, torch and MLflow are imported inside the command bodies, so `reid --help` stays light.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Any

import click

from experiments.cli_options import LOG_CHECKPOINTS, TRACKING_URI
from reid_core import __version__
from reid_core.errors import ReidError, printable
from reid_core.safeio import shorten

_STORAGE = click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="Optuna storage: sqlite:///FILE or postgresql://USER@HOST/DB "
    "(default: the spec's storage.url, else sqlite:///studies.db).",
)
_DATA = click.option(
    "--data",
    "data_root",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset root (default: the spec's `data`, or the study's).",
)
_CHECKPOINTS = click.option(
    "--checkpoints",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Trial run folders, readable by every worker (default: runs/studies).",
)


@click.group("study")
def study_group() -> None:
    """Optuna studies: sample configs, train them as nested MLflow runs, prune, retry.

    \b
      reid study specs                         # shipped specs
      reid study run demo --data demo/data     # create or resume, run 2 local workers
      reid study status demo                   # trials per state, best, running
      reid study best demo --promote           # register the best trial, gated promotion
    Many machines: `reid study create SPEC --storage postgresql://...` once, then
    `reid study worker NAME --storage postgresql://...` on each (docs/STUDIES.md).
    """


@study_group.command("specs")
def specs_cmd() -> None:
    """List the shipped study specs (use a name or a path to your own YAML)."""
    from studies.spec import shipped_specs

    for name, description in shipped_specs().items():
        click.echo(f"{name:<16} {description}")


def _setup(
    spec_arg: str, storage: str | None, data_root: Path | None, tracking_uri, ckpts, keep=None
):
    from studies.record import Placement
    from studies.spec import load_spec, parse_spec, spec_to_dict
    from studies.storage import resolve_url

    spec = load_spec(spec_arg)
    if keep is not None:  # --log-checkpoints: the spec's tracking.log_checkpoints, validated
        tree = {**spec_to_dict(spec), "tracking": {"log_checkpoints": keep}}
        spec = parse_spec(tree, f"study spec {spec_arg}")
    url = resolve_url(storage, spec.storage.url)
    return spec, Placement(url, data_root, tracking_uri, ckpts)


@study_group.command("create")
@click.argument("spec")
@_DATA
@_STORAGE
@TRACKING_URI
@_CHECKPOINTS
@LOG_CHECKPOINTS
def create_cmd(spec: str, data_root, storage, tracking_uri, checkpoints, log_checkpoints) -> None:
    """Create the study SPEC (a shipped name or a YAML path) and its MLflow parent run."""
    from studies.record import read_record
    from studies.storage import redact
    from studies.study import create

    loaded, place = _setup(spec, storage, data_root, tracking_uri, checkpoints, log_checkpoints)
    study = create(loaded, place)
    b = loaded.budget
    budget = f"{b.n_trials} trial(s)" if b.n_trials is not None else f"{b.timeout:g} s"
    click.echo(
        f"study {loaded.name} in {redact(place.storage)}: budget {budget}, "
        f"{len(study.trials)} trial(s) so far; parent run {read_record(study).parent_run_id}"
    )
    click.echo(f"join with: reid study worker {loaded.name} --storage {redact(place.storage)}")


@study_group.command("run")
@click.argument("spec")
@_DATA
@click.option(
    "--workers",
    "-w",
    default=1,
    show_default=True,
    type=click.IntRange(min=1, max=256),
    help="Local worker processes (1 to 256).",
)
@click.option(
    "--gpus",
    default=None,
    metavar="0,1,..",
    help="One worker per listed GPU (overrides -w); a GPU listed twice runs two workers on it "
    "(small trials sharing a device: --gpus 0,0,1,1).",
)
@_STORAGE
@TRACKING_URI
@_CHECKPOINTS
@LOG_CHECKPOINTS
def run_cmd(
    spec: str,
    data_root,
    workers: int,
    gpus: str | None,
    storage,
    tracking_uri,
    checkpoints,
    log_checkpoints,
):
    """Create or resume study SPEC and run local workers until its budget is met.

    Each worker is a process (torch threads = cores / workers) writing its log under
    CHECKPOINTS/NAME/logs/. Ctrl-C stops cleanly: running trials are marked failed
    (interrupted), and the same command continues to the budget.
    """
    from studies.coordinator import run_study

    loaded, place = _setup(spec, storage, data_root, tracking_uri, checkpoints, log_checkpoints)
    code = run_study(loaded, place, workers=workers, gpus=_gpu_list(gpus))
    click.get_current_context().exit(code)


@study_group.command("worker")
@click.argument("name")
@click.option("--storage", required=True, metavar="URL", help="The study's Optuna storage.")
@_DATA
@TRACKING_URI
@_CHECKPOINTS
@click.option("--index", default=None, type=int, help="Worker number (seeds its sampler).")
@click.option(
    "--gpus",
    default=None,
    metavar="0,1,..",
    help="Run one worker process per listed GPU instead of working in this process; a GPU "
    "listed twice runs two workers on it (--gpus 0,0,1,1).",
)
def worker_cmd(name: str, storage: str, data_root, tracking_uri, checkpoints, index, gpus) -> None:
    """Join study NAME and work until its budget is met (what a second machine runs)."""
    from experiments.tracking import sigterm_as_interrupt
    from studies.record import Placement
    from studies.workers import WorkerArgs, work

    args = WorkerArgs(
        study=name,
        placement=Placement(storage, data_root, tracking_uri, checkpoints),
        index=os.getpid() % 10_000 if index is None else index,
        gpu=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    devices = _gpu_list(gpus)
    with sigterm_as_interrupt():
        if devices:
            _work_on_gpus(args, devices)
        else:
            from studies import interrupt

            interrupt.install()
            work(args)
    click.echo(f"worker done: study {name}")


def _gpu_list(gpus: str | None) -> list[str] | None:
    """`--gpus 0,0,1` -> ["0", "0", "1"] (repeats kept: two workers on GPU 0)."""
    if gpus is None:
        return None
    devices = [g.strip() for g in gpus.split(",")]
    if not devices or any(not g.isdigit() for g in devices):
        raise ReidError(f"--gpus {gpus!r}: give device numbers separated by commas, e.g. 0,0,1")
    return devices


def _work_on_gpus(args: Any, devices: list[str]) -> None:
    """`reid study worker --gpus`: one spawned worker per listed device, waited for."""
    from studies.coordinator import spawn_workers
    from studies.record import read_record
    from studies.storage import resolve_url
    from studies.study import load

    study, _, _ = load(args.study, resolve_url(args.placement.storage))
    logs = read_record(study).folders_for(args.placement) / "logs"
    procs = spawn_workers(args, len(devices), devices, logs, first=args.index)
    click.echo(f"{len(procs)} worker(s) on GPUs {','.join(devices)}; logs in {logs}")
    for proc in procs:
        proc.join()
    failed = [p.exitcode for p in procs if p.exitcode not in (0, 130)]
    if failed:
        raise ReidError(f"{len(failed)} worker(s) exited with {failed}; see {logs}")


def _load(name: str, storage: str | None) -> tuple[Any, Any, str]:
    from studies.storage import resolve_url
    from studies.study import load

    url = resolve_url(storage)
    study, spec, _ = load(name, url)
    return study, spec, url


@study_group.command("status")
@click.argument("name")
@_STORAGE
@click.option("--json", "as_json", is_flag=True, help="Exactly one JSON object on stdout.")
def status_cmd(name: str, storage: str | None, as_json: bool) -> None:
    """Trials per state, the best trial, and running trials with their epoch and age."""
    from reid_core.cli import echo_json
    from studies.report import status

    study, spec, _ = _load(name, storage)
    st = status(study, spec)
    if as_json:
        echo_json(st)
        return
    from studies.live import print_status

    print_status(study, spec, st)


@study_group.command("best")
@click.argument("name")
@_STORAGE
@TRACKING_URI
@click.option("--promote", is_flag=True, help="Register its model and try @champion.")
@click.option("--min-delta", type=float, default=0.0, show_default=True)
@click.option("--model-name", default="omnireid", show_default=True)
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="metrics.json of an untrained baseline (reid eval --out) to compare with.",
)
def best_cmd(name, storage, tracking_uri, promote, min_delta, model_name, baseline) -> None:
    """The best trial (by val): its value, params, test score and per-set table.

    `--promote` registers the trial's model and moves @champion when its test score beats
    the holder's by at least --min-delta (exits 1, explaining, when it does not).
    """
    from studies.live import print_best

    study, spec, _ = _load(name, storage)
    print_best(study, spec, baseline)
    if promote:
        from studies.promote import promote_best

        click.echo(promote_best(study, spec, tracking_uri, model_name, min_delta))


@study_group.command("dashboard")
@_STORAGE
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback unless asked.")
@click.option("--port", default=8080, show_default=True, type=int)
def dashboard_cmd(storage: str | None, host: str, port: int) -> None:
    """optuna-dashboard over the study storage (Ctrl-C stops it)."""
    from studies.storage import check_reachable, engine_url, redact, resolve_url

    url = resolve_url(storage)
    check_reachable(url)
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise ReidError(
            "optuna-dashboard is not installed (pip install optuna-dashboard)"
        ) from None
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"optuna-dashboard for {redact(url)} at http://{shown}:{port}  (Ctrl-C stops it)")
    with contextlib.suppress(KeyboardInterrupt):
        run_server(engine_url(url), host=host, port=port)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="omnireid")
def cli() -> None:
    """OmniReID: multimodal person re-identification (RGB gallery; IR, sketch, colour-pencil and
    text queries) with one CLIP encoder and modality-routed LoRA.

    \b
    Typical day:
      reid data synth demo/data            # or point at ORBench
      reid data check demo/data
      reid train --preset cpu-tiny --data demo/data --out runs/tiny
      reid eval --checkpoint runs/tiny/checkpoints/last.pt --data demo/data
    """


def _assemble() -> click.Group:
    from experiments import cli as experiments_cli
    from reid_core import cli as core_cli

    core_cli.register(cli)
    experiments_cli.register(cli)
    cli.add_command(study_group)
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user mistakes print one line on stderr and exit 2, never a traceback."""
    # A second layer under experiments.registry.load_model's MLmodel check: MLflow itself
    # refuses cloudpickled models in this process (a user's explicit setting wins).
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    # OpenMP threads that sleep when they wait instead of spinning: on a machine shared with
    # other work a spinning thread burns the core another process needs (a step 4-17x slower
    # than with one thread there). Read when torch loads, which `reid` does only after this.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    group = _assemble()
    try:
        # Without standalone mode click returns `ctx.exit(code)`'s code instead of exiting.
        code = group.main(args=argv, prog_name="reid", standalone_mode=False)
    except ReidError as exc:
        # printable again: the last line of defence, whatever built the message
        click.echo(f"error: {printable(str(exc))}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.message = printable(exc.message)  # it may quote an argument the user typed
        exc.show()
        return exc.exit_code
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        name = shorten(exc.filename or "", 80)
        click.echo(f"error: {name}: file name too long (over the system's limit)", err=True)
        return 2
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # click turns a KeyboardInterrupt into Abort; `sigterm_as_interrupt` raises
        # KeyboardInterrupt("signal 15"): exit as a terminated process does (128 + 15), so a
        # scheduler sees SIGTERM; Ctrl-C exits 130
        cause = exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__
        if isinstance(cause, KeyboardInterrupt) and cause.args == ("signal 15",):
            click.echo("terminated (SIGTERM)", err=True)
            return 143
        if isinstance(cause, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            return 130
        click.echo("aborted", err=True)
        return 1
    return code if isinstance(code, int) else 0


def entry() -> None:
    """Console-script entry: exit with `main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
