"""`reid data synth|check|stats`."""

from __future__ import annotations

import click


@click.group("data")
def data_group() -> None:
    """Synthesize, check and describe datasets in the ORBench layout."""
