"""`reid config`, `reid data` and `reid model`: the core layer's commands.

Heavy modules (torch, open_clip) are imported inside the commands, so `reid --help` stays light.
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
        help="Override a dotted key, e.g. --set model.mer.rank=8 (repeatable).",
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


# --------------------------------------------------------------------------------------- config
@click.group("config")
def config_group() -> None:
    """Show the resolved config or its JSON schema."""


@config_group.command("show")
@config_options
def config_show(preset: str | None, config_file: Path | None, overrides: tuple[str, ...]) -> None:
    """Print the resolved config as YAML (preset, then file, then --set overrides)."""
    from reid_core.config import to_yaml

    click.echo(to_yaml(load_from_options(preset, config_file, overrides)), nl=False)


@config_group.command("schema")
def config_schema() -> None:
    """Print the config's JSON schema."""
    from reid_core.config import schema_json

    click.echo(schema_json())


@config_group.command("presets")
def config_presets() -> None:
    """List the shipped presets."""
    from reid_core.config import list_presets

    for name in list_presets():
        click.echo(name)


def register(root: click.Group) -> None:
    """Add this layer's command groups to the `reid` entry point."""
    from reid_core import data_cli, model_cli

    root.add_command(config_group)
    root.add_command(data_cli.data_group)
    root.add_command(model_cli.model_group)


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
