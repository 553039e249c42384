"""`reid train`, `reid eval`, `reid models list|promote` and `reid ui`; the gallery's commands
(`reid index`, `reid search`, `reid serve`) are in `experiments.gallery.cli`.

MLflow and torch are imported inside the command bodies, so `reid --help` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from experiments.cli_options import (
    _NAME,
    LOG_CHECKPOINTS,
    TRACKING_URI,
    client_for,
    tracking_options,
)
from reid_core.cli import config_options, echo_json, load_from_options
from reid_core.errors import ReidError

_DATA = click.option(
    "--data",
    "data_root",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset root in the ORBench layout (ROOT/{vis,nir,sk,cp}/<id>/...).",
)


@click.command("train")
@config_options
@_DATA
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoints/last.pt.")
@click.option(
    "--resume-from",
    type=click.Path(path_type=Path),
    default=None,
    metavar="CHECKPOINT",
    help="Start the new run folder OUT from another run's checkpoint (its config and epoch).",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Profile a window of steps after warm-up into OUT/profile.json and a trace "
    "(the same as --set train.profile=true).",
)
@tracking_options
@LOG_CHECKPOINTS
def train_cmd(no_track: bool, profile: bool, **options: Any) -> None:
    """Train on ROOT: val every `train.eval_every` epochs, test once at the end.

    Writes OUT/config.yaml, OUT/checkpoints/{last,best}.pt, OUT/history.jsonl and
    OUT/metrics.json (and OUT/profile.json with --profile), and prints the test table. Under
    `torchrun --nproc-per-node N` it trains data-parallel; rank 0 alone tracks, writes and
    prints (docs/DISTRIBUTED.md).
    """
    from reid_core.training import distributed

    if profile:
        options["overrides"] = (*options["overrides"], "train.profile=true")
    try:
        # every rank but rank 0 of a torchrun launch runs untracked
        _train(no_track=no_track or not distributed.launched().is_main, **options)
    finally:
        distributed.shutdown()


def _train(
    preset: str | None,
    config_file: Path | None,
    overrides: tuple[str, ...],
    data_root: Path,
    out: Path,
    resume: bool,
    resume_from: Path | None,
    no_track: bool,
    tracking_uri: str | None,
    experiment: str,
    model_name: str,
    log_checkpoints: str | None,
) -> None:
    from experiments.run import train
    from experiments.tables import print_metrics
    from reid_core.training.paths import RunPaths

    given = preset or config_file or overrides
    continuing = resume or resume_from is not None
    cfg = load_from_options(preset, config_file, overrides) if given or not continuing else None
    data = None
    if cfg is not None:  # bad data fails here, before anything is written or tracked
        from reid_core.training.setup import DataBundle

        data = DataBundle.load(data_root, cfg)
    if no_track:
        outcome = train(cfg, data_root, out, resume=resume, resume_from=resume_from, data=data)
    else:
        from experiments.tracking import Logs, MlflowTracker, open_store, sigterm_as_interrupt

        store = open_store(tracking_uri, experiment)
        name = f"{out.name}-{preset}" if preset and preset != out.name else out.name
        from reid_core.training.distributed import launched

        world = launched().world_size  # rank 0 of a torchrun launch tracks for every rank
        tags = {"distributed.world_size": str(world)} if world > 1 else None
        tracker = MlflowTracker(
            cfg,
            data_root,
            out,
            store=store,
            run_name=name,
            tags=tags,
            logs=Logs(model_name=model_name, checkpoints=log_checkpoints or "best"),
        )
        with sigterm_as_interrupt(), tracker:
            outcome = train(
                cfg,
                data_root,
                out,
                resume=resume,
                resume_from=resume_from,
                data=data,
                callbacks=[tracker],
            )
            tracker.finish(outcome)
        click.echo(tracker.summary())
    if not outcome.is_main:
        return  # rank 0 reports for every rank
    if outcome.finished:
        print_metrics(outcome.result)
    else:
        click.echo(f"stopped: {outcome.stop_reason}; not scored on test")
    click.echo(f"wrote {RunPaths(out).metrics}")


@click.command("eval")
@config_options
@_DATA
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Checkpoint to score; without it the untrained model is scored (the baseline).",
)
@click.option(
    "--protocol",
    type=click.Choice(["auto", "unordered15", "ordered32"]),
    default=None,
    help="Query protocol (default: eval.protocol; auto = the evaluation file's when present).",
)
@click.option("--split", type=click.Choice(["val", "test"]), default="test", show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Write OUT/metrics.json."
)
@click.option(
    "--rank-lists",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Draw ranklist_<set>.png (single sets and the quadruple) for N seeded queries each, "
    "into --rank-lists-dir, else OUT; tracked, also logged under plots/.",
)
@click.option(
    "--rank-lists-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the rank-list pictures (default: OUT).",
)
@tracking_options
def eval_cmd(
    preset: str | None,
    config_file: Path | None,
    overrides: tuple[str, ...],
    data_root: Path,
    checkpoint: Path | None,
    protocol: str | None,
    split: str,
    out: Path | None,
    rank_lists: int,
    rank_lists_dir: Path | None,
    no_track: bool,
    tracking_uri: str | None,
    experiment: str,
    model_name: str,
) -> None:
    """Score a checkpoint, or the untrained model of --preset, on the val or test split."""
    from experiments.run import evaluate
    from experiments.tables import print_metrics

    if checkpoint is None and not (preset or config_file):
        raise ReidError("give --checkpoint PATH, or --preset/--config to score an untrained model")
    pictures = rank_lists_dir or out
    if rank_lists and pictures is None and no_track:
        raise ReidError("--rank-lists N needs --out or --rank-lists-dir (or tracking) to go to")
    cfg = _eval_config(checkpoint, preset, config_file, overrides, protocol)
    store = None
    if not no_track:
        from experiments.tracking import open_store

        store = open_store(tracking_uri, experiment)  # fail fast, before the evaluation
    if rank_lists:
        from experiments.ranklist import log_rank_lists, write_rank_lists

        result, emb, proto, root = evaluate(
            cfg, data_root, checkpoint=checkpoint, split=split, out=out, with_embeddings=True
        )
    else:
        result = evaluate(cfg, data_root, checkpoint=checkpoint, split=split, out=out)
    print_metrics(result)
    if rank_lists and pictures is not None:
        files = write_rank_lists(emb, proto, root, pictures, rank_lists, cfg.train.seed)
        click.echo(f"wrote {len(files)} rank list(s) to {pictures}")
    if store is not None:
        from experiments.eval_run import log_evaluation

        run_id = log_evaluation(store, cfg, data_root, result, checkpoint)
        if rank_lists:
            logged = log_rank_lists(
                store.client, run_id, emb, proto, root, rank_lists, cfg.train.seed
            )
            click.echo(f"logged {len(logged)} rank list(s) under plots/")
        click.echo(f"mlflow run {run_id} in {store.uri}")


def _eval_config(
    checkpoint: Path | None,
    preset: str | None,
    config_file: Path | None,
    overrides: tuple[str, ...],
    protocol: str | None,
) -> Any:
    """The checkpoint's own config (with --set on top), else the preset/config files'; with
    --protocol."""
    from reid_core.config import parse_override, validate_tree, with_overrides
    from reid_core.training.checkpoint import load_checkpoint

    if checkpoint is not None:
        cfg = validate_tree(load_checkpoint(checkpoint)["config"], f"{checkpoint} config")
        if overrides:
            cfg = with_overrides(cfg, dict(parse_override(o) for o in overrides))
    else:
        cfg = load_from_options(preset, config_file, overrides)
    if protocol is not None:
        cfg = with_overrides(cfg, {"eval.protocol": protocol})
    return cfg


# --------------------------------------------------------------------------------------- models
@click.group("models")
def models_group() -> None:
    """Registered model versions and their promotion to an alias (champion)."""


@models_group.command("list")
@_NAME
@TRACKING_URI
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_list(model_name: str, tracking_uri: str | None, as_json: bool) -> None:
    """Versions with aliases, test score, run, dataset digest and protocol."""
    from experiments.registry import list_versions

    versions = list_versions(client_for(tracking_uri), model_name)
    if as_json:
        echo_json([v.as_dict() for v in versions])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{model_name}: {len(versions)} version(s)")
    for col in ("version", "aliases", "test.score", "run", "dataset", "protocol", "created"):
        table.add_column(col, justify="right" if col in ("version", "test.score") else "left")
    for v in versions:
        score = "-" if v.score is None else f"{v.score:.4f}"
        table.add_row(
            v.version,
            ",".join(v.aliases),
            score,
            v.run_id or "-",
            v.digest[:12],
            v.protocol,
            v.created,
        )
    Console(width=140).print(table)


@models_group.command("promote")
@_NAME
@TRACKING_URI
@click.option("--run", "run_id", default=None, help="Candidate: the version this run registered.")
@click.option("--version", default=None, help="Candidate version (default: the newest).")
@click.option("--alias", default="champion", show_default=True)
@click.option(
    "--min-delta",
    type=float,
    default=0.0,
    show_default=True,
    help="The candidate's test.score must beat the holder's by at least this much.",
)
@click.option("--force", is_flag=True, help="Promote even when it does not win.")
def models_promote(
    model_name: str,
    tracking_uri: str | None,
    run_id: str | None,
    version: str | None,
    alias: str,
    min_delta: float,
    force: bool,
) -> None:
    """Promote a version to ALIAS when its test score on the same data beats the holder's.

    Exits 1, explaining why, when it does not; the decision is kept in version tags.
    """
    from experiments.registry import promote
    from reid_core.errors import ReidError

    if run_id and version:
        raise ReidError("give --run or --version, not both")
    d = promote(
        client_for(tracking_uri),
        model_name,
        alias=alias,
        version=version,
        run_id=run_id,
        min_delta=min_delta,
        force=force,
    )
    before = f"version {d.holder.version}" if d.holder else "nobody"
    click.echo(
        f"promoted {model_name} version {d.candidate.version} to {alias!r} "
        f"(was {before}): {d.reason}"
    )


# ------------------------------------------------------------------------------------------- ui
@click.command("ui")
@TRACKING_URI
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; another than loopback only when given explicitly.",
)
@click.option("--port", default=5000, show_default=True, type=int)
def ui_cmd(tracking_uri: str | None, host: str, port: int) -> None:
    """The MLflow UI over this project's store (runs, metrics, models)."""
    from experiments.ui import run_ui

    click.get_current_context().exit(run_ui(tracking_uri, host, port))


def register(root: click.Group) -> None:
    """Add this layer's commands to the `reid` entry point."""
    from experiments.gallery.cli import register as register_gallery

    for command in (train_cmd, eval_cmd, models_group, ui_cmd):
        root.add_command(command)
    register_gallery(root)  # reid index, reid search, reid serve
