"""`reid config`, `reid data` and `reid model`: the core layer's commands.

Heavy modules (torch, open_clip) are imported inside the commands, so `reid --help` stays light.
"""

from __future__ import annotations

from pathlib import Path

import click

# Re-exported: `from reid_core.cli import config_options, load_from_options, echo_json` keeps
# working for the experiments layer; the sub-commands import reid_core.cli_options directly.
from reid_core.cli_options import config_options, echo_json, load_from_options, stderr

__all__ = ["config_options", "echo_json", "load_from_options", "register", "stderr"]


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
