"""`reid index build`, `reid search` and `reid serve`: embed a gallery once, rank it against a
query from the command line or over HTTP.

torch, MLflow, faiss and FastAPI are imported inside the command bodies, so `reid --help` stays
light.
"""

from __future__ import annotations

from pathlib import Path

import click

from experiments.cli_options import TRACKING_URI, client_for
from reid_core.cli import echo_json
from reid_core.errors import printable

MAX_UPLOAD_MB = 256  # per image; the request body may hold three

_MODEL = click.option(
    "--model",
    "model_uri",
    default="models:/omnireid@champion",
    show_default=True,
    help=(
        "Registered model (models:/NAME@ALIAS, models:/NAME/VERSION), a logged model "
        "(models:/m-ID) or a run's model (runs:/RUN_ID/RUN_NAME: named after its run)."
    ),
)
_KIND = click.option(
    "--kind",
    type=click.Choice(["exact", "hnsw", "ivf"]),
    default="exact",
    show_default=True,
    help="exact (chunked matrix product), or approximate with faiss for large galleries (an "
    "index's faiss structure is built on first use and kept; `reid search` needs --index).",
)


@click.group("index")
def index_group() -> None:
    """Gallery indexes: a folder of RGB images embedded once by one model."""


@index_group.command("build")
@_MODEL
@click.option(
    "--gallery",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of RGB images (a dataset ROOT: its vis/).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option(
    "--chunk-rows",
    default=2048,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images per chunk file (an interrupted build continues at the first missing chunk).",
)
@_KIND
@TRACKING_URI
def index_build(
    model_uri: str,
    gallery: Path,
    out: Path,
    chunk_rows: int,
    kind: str,
    tracking_uri: str | None,
) -> None:
    """Embed GALLERY into OUT (resumable); with --kind hnsw|ivf also build that faiss index."""
    from experiments.gallery.index import build_index, describe
    from experiments.registry import load_model

    client_for(tracking_uri)
    model = load_model(model_uri)
    index, what = build_index(model, model_uri, gallery, out, chunk_rows=chunk_rows)
    if kind != "exact":
        index.faiss(kind)
    rows, dim = index.embeddings.shape
    click.echo(
        f"{what}: {printable(out)} holds {rows} images x {dim} by "
        f"{describe(index.meta['model'])}" + (f"; faiss {kind} ready" if kind != "exact" else "")
    )


@click.command("serve")
@_MODEL
@click.option(
    "--index",
    "index_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A gallery index from `reid index build` made by --model.",
)
@_KIND
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; another than loopback only when given explicitly.",
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--max-upload-mb",
    default=8.0,
    show_default=True,
    type=float,
    help="Largest image accepted per field (0.01 to 256).",
)
@TRACKING_URI
def serve_cmd(
    model_uri: str,
    index_dir: Path,
    kind: str,
    host: str,
    port: int,
    max_upload_mb: float,
    tracking_uri: str | None,
) -> None:
    """Search service: POST /search, GET /healthz, the search page at / (OpenAPI at /docs)."""
    import uvicorn

    from experiments.gallery.index import model_identity, open_index
    from experiments.gallery.serve import create_app
    from experiments.registry import load_model
    from reid_core.errors import ReidError

    if not 0.01 <= max_upload_mb <= MAX_UPLOAD_MB:  # NaN fails this too
        raise ReidError(f"--max-upload-mb {max_upload_mb}: must be from 0.01 to {MAX_UPLOAD_MB}")

    index = open_index(index_dir, verify=True)  # a bad index is refused before anything else
    client_for(tracking_uri)
    model = load_model(model_uri)
    index.check_model(model_identity(model, model_uri))
    if kind != "exact":
        index.faiss(kind)  # build (or read) it before the first request
    app = create_app(model, index, kind=kind, max_bytes=int(max_upload_mb * 2**20))
    shown = printable(index_dir)
    click.echo(f"serving {shown} ({len(index.paths)} images, {kind}) at http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="warning")


# --------------------------------------------------------------------------------------- search
@click.command("search")
@_MODEL
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
@_KIND
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
    from experiments.gallery.search import cache_dir, parse_query, search
    from experiments.registry import load_model
    from reid_core.errors import ReidError

    if (gallery is None) == (index_dir is None):
        raise ReidError("give --gallery DIR or --index INDEX (one of them)")
    if kind != "exact" and index_dir is None:
        raise ReidError(f"--kind {kind} needs --index INDEX")
    query = parse_query(queries)
    client_for(tracking_uri)
    model = load_model(model_uri)
    matches, cached = search(
        model,
        model_uri,
        query,
        top,
        index_dir=index_dir,
        gallery=gallery,
        kind=kind,
        cache=None if no_cache else cache_dir(),
    )
    if index_dir is not None:
        source = f"index {index_dir} ({kind})"
    else:
        source = f"gallery {gallery} ({'cached' if cached else 'embedded'})"
    if as_json:
        matches_json = [m.as_dict() for m in matches]
        echo_json({"model": model_uri, "gallery_cached": cached, "matches": matches_json})
        return
    click.echo(printable(f"{model_uri}; {source}"))
    for m in matches:
        ident = "-" if m.identity is None else f"{m.identity:04d}"
        click.echo(f"{m.rank:>4}  {m.score:.4f}  id {ident}  {printable(m.path)}")


def register(root: click.Group) -> None:
    for command in (index_group, search_cmd, serve_cmd):
        root.add_command(command)
