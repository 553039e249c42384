"""Option helpers shared by the `reid` sub-commands: `--preset/--config/--set`, JSON output.

They live apart from `reid_core.cli`, which registers the command groups, so a sub-command module
imports them without importing the module that imports it.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--preset`, `--config` and repeated `--set dotted.key=value`."""

    @click.option(
        "--preset", "-p", default=None, help="Shipped preset: micro, cpu-tiny, vit-b16, orbench."
    )
    @click.option(
        "--config",
        "-c",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="YAML config file (merged on top of --preset).",
    )
    @click.option(
        "--set",
        "-s",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a dotted key, e.g. --set model.lora.rank=8 (repeatable).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def load_from_options(preset: str | None, config_file: Path | None, overrides: tuple[str, ...]):
    from reid_core.config import load_config

    return load_config(preset=preset, config_file=config_file, overrides=overrides)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def stderr(message: str) -> None:
    """One line on stderr: control characters in names are escaped, never printed."""
    from reid_core.errors import printable

    print(printable(message), file=sys.stderr, flush=True)
