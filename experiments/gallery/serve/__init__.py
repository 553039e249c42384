"""The search service (FastAPI): `create_app(model, index)`; `reid serve` runs it with uvicorn."""

from experiments.gallery.serve.app import create_app

__all__ = ["create_app"]
