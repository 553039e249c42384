"""`reid index build` and `reid serve`: embed a gallery once, then search it over HTTP.

torch, MLflow, faiss and FastAPI are imported inside the command bodies, so `reid --help` stays
light.
"""

from __future__ import annotations

from pathlib import Path

import click

from experiments.commands import TRACKING_URI, _client

_MODEL = click.option(
    "--model",
    "model_uri",
    default="models:/omnireid@champion",
    show_default=True,
    help="Registered model (models:/NAME@ALIAS, models:/NAME/VERSION) or runs:/RUN/model.",
)
_KIND = click.option(
    "--kind",
    type=click.Choice(["exact", "hnsw", "ivf"]),
    default="exact",
    show_default=True,
    help="exact (chunked matrix product), or approximate with faiss for large galleries.",
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
    from experiments.index import build_index, describe
    from experiments.registry import load_model

    _client(tracking_uri)
    model = load_model(model_uri)
    index, what = build_index(model, model_uri, gallery, out, chunk_rows=chunk_rows)
    if kind != "exact":
        index.faiss(kind)
    click.echo(
        f"{what}: {out} holds {len(index.paths)} images x {index.embeddings.shape[1]} by "
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
    type=click.FloatRange(min=0.01),
    help="Largest image accepted per field.",
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

    from experiments.index import model_identity, open_index
    from experiments.registry import load_model
    from experiments.serve import create_app

    _client(tracking_uri)
    index = open_index(index_dir)
    model = load_model(model_uri)
    index.check_model(model_identity(model, model_uri))
    if kind != "exact":
        index.faiss(kind)  # build (or read) it before the first request
    app = create_app(model, index, kind=kind, max_bytes=int(max_upload_mb * 2**20))
    click.echo(f"serving {index_dir} ({len(index.paths)} images, {kind}) at http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register_commands(root: click.Group) -> None:
    root.add_command(index_group)
    root.add_command(serve_cmd)
