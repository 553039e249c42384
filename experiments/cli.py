"""`reid train`, `reid eval` (and, with tracking, `models`, `search`, `ui`)."""

from __future__ import annotations

import click


def register(root: click.Group) -> None:
    """Add this layer's commands to the `reid` entry point."""
    del root  # train/eval land with the training engine
