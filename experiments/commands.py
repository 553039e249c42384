"""`reid models list|promote`, `reid search` and `reid ui`; the tracking options of train/eval.

MLflow and torch are imported inside the command bodies, so `reid --help` stays light.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reid_core.cli import echo_json

_DEFAULT_EXPERIMENT = "omnireid"  # experiments.tracking.DEFAULT_EXPERIMENT, without importing it
_DEFAULT_MODEL = "omnireid"

TRACKING_URI = click.option(  # shared with `reid study`
    "--tracking-uri",
    default=None,
    metavar="URI",
    help="MLflow tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
)
_NAME = click.option(
    "--name",
    "model_name",
    default=_DEFAULT_MODEL,
    show_default=True,
    help="Registered model name.",
)


def tracking_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--no-track`, `--tracking-uri`, `--experiment` and `--model-name`."""

    @click.option("--no-track", is_flag=True, help="Do not use MLflow at all.")
    @TRACKING_URI
    @click.option(
        "--experiment",
        default=_DEFAULT_EXPERIMENT,
        show_default=True,
        help="MLflow experiment (created on first use).",
    )
    @click.option(
        "--model-name",
        default=_DEFAULT_MODEL,
        show_default=True,
        help="Register the trained model under this name.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def _client(tracking_uri: str | None) -> Any:
    import mlflow

    from experiments.store import _quiet_mlflow, check_reachable, resolve_uri

    _quiet_mlflow()
    uri = resolve_uri(tracking_uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, uri)


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

    versions = list_versions(_client(tracking_uri), model_name)
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
        _client(tracking_uri),
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


# --------------------------------------------------------------------------------------- search
@click.command("search")
@click.option("--model", "model_uri", default="models:/omnireid@champion", show_default=True)
@click.option(
    "--gallery",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder of RGB images (a dataset ROOT: its vis/); or give --index.",
)
@click.option(
    "--index",
    "index_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="A gallery index from `reid index build` (made by --model; refused otherwise).",
)
@click.option(
    "--kind",
    type=click.Choice(["exact", "hnsw", "ivf"]),
    default="exact",
    show_default=True,
    help="With --index: exact, or approximate with faiss (built on first use, kept).",
)
@click.option(
    "--query",
    "queries",
    multiple=True,
    required=True,
    metavar="MODALITY=VALUE",
    help='A query item: nir=PATH, cp=PATH, sk=PATH or text="..." (repeatable; '
    "items fuse into one query).",
)
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--no-cache", is_flag=True, help="Re-embed the gallery even when cached.")
@TRACKING_URI
def search_cmd(
    model_uri: str,
    gallery: Path | None,
    index_dir: Path | None,
    kind: str,
    queries: tuple[str, ...],
    top: int,
    as_json: bool,
    no_cache: bool,
    tracking_uri: str | None,
) -> None:
    """Rank the gallery against a query fused from its items; prints matches with scores."""
    from experiments.registry import load_model
    from experiments.search import cache_dir, parse_query, search, search_index
    from reid_core.errors import ReidError

    if (gallery is None) == (index_dir is None):
        raise ReidError("give --gallery DIR or --index INDEX (one of them)")
    if kind != "exact" and index_dir is None:
        raise ReidError(f"--kind {kind} needs --index INDEX")
    query = parse_query(queries)
    _client(tracking_uri)
    model = load_model(model_uri)
    if index_dir is not None:
        matches = search_index(model, model_uri, index_dir, query, top, kind)
        source, cached = f"index {index_dir} ({kind})", True
    else:
        assert gallery is not None
        matches, cached = search(model, gallery, query, top, None if no_cache else cache_dir())
        source = f"gallery {gallery} ({'cached' if cached else 'embedded'})"
    if as_json:
        matches_json = [m.as_dict() for m in matches]
        echo_json({"model": model_uri, "gallery_cached": cached, "matches": matches_json})
        return
    click.echo(f"{model_uri}; {source}")
    for m in matches:
        ident = "-" if m.identity is None else f"{m.identity:04d}"
        click.echo(f"{m.rank:>4}  {m.score:.4f}  id {ident}  {m.path}")


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


def register_commands(root: click.Group) -> None:
    root.add_command(models_group)
    root.add_command(search_cmd)
    root.add_command(ui_cmd)
