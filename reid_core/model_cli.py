"""`reid model summary`."""

from __future__ import annotations

from pathlib import Path

import click

from reid_core.cli_options import config_options, echo_json, load_from_options


@click.group("model")
def model_group() -> None:
    """Inspect the model a config builds."""


@model_group.command("summary")
@config_options
@click.option(
    "--num-classes",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Identities the ID classifier is sized for.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def model_summary(
    preset: str | None,
    config_file: Path | None,
    overrides: tuple[str, ...],
    num_classes: int,
    as_json: bool,
) -> None:
    """Parameters per group, LoRA parameters per modality and target, FLOPs per sample.

    Built without pretrained weights (same architecture), so nothing is downloaded.
    """
    from reid_core.model.summary import format_summary
    from reid_core.model.summary import model_summary as summarise

    info = summarise(load_from_options(preset, config_file, overrides), num_classes)
    if as_json:
        echo_json(info)
    else:
        click.echo(format_summary(info))
