"""`reid model summary`."""

from __future__ import annotations

import click


@click.group("model")
def model_group() -> None:
    """Inspect the model a config builds."""
