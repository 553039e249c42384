"""Click options shared by the experiments layer's commands (and `reid study`): the tracking
store and the registered model name, and the MLflow client they select."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

_DEFAULT_EXPERIMENT = "omnireid"  # experiments.tracking.DEFAULT_EXPERIMENT, without importing it
_DEFAULT_MODEL = "omnireid"

TRACKING_URI = click.option(  # shared with `reid study`
    "--tracking-uri",
    default=None,
    metavar="URI",
    help="MLflow tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
)
LOG_CHECKPOINTS = click.option(  # shared with `reid study run`
    "--log-checkpoints",
    type=click.Choice(["best", "all", "none"]),
    default=None,
    help="Checkpoint artifacts in MLflow: best (the one the test score came from; a study: "
    "the best trial's only), all, none; run folders keep theirs (default: best, or the study "
    "spec's tracking.log_checkpoints).",
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


def client_for(tracking_uri: str | None) -> Any:
    import mlflow

    from experiments.store import _quiet_mlflow, check_reachable, resolve_uri

    _quiet_mlflow()
    uri = resolve_uri(tracking_uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, uri)
