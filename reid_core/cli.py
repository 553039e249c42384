"""`reid config`, `reid data` and `reid model`: the core layer's commands.

Heavy modules (torch, open_clip, numpy, Pillow, the data modules) are imported inside the
commands, so `reid --help` stays light. User mistakes raise a ReidError; the entry point prints
it on one line and exits 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from reid_core.cli_options import config_options, echo_json, load_from_options, stderr
from reid_core.errors import DataError

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


# ----------------------------------------------------------------------------------------- data
_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
MAX_CHECK_WORKERS = 64  # decoding threads; each may hold a decoded image


@click.group("data")
def data_group() -> None:
    """Synthesize, check and describe datasets in the ORBench layout."""


def parse_size(text: str) -> tuple[int, int]:
    """`HxW` (e.g. `128x64`) into `(height, width)`, each at least 8 pixels."""
    match = _SIZE.match(text)
    if not match:
        raise DataError(f"--size {text!r} must be HEIGHTxWIDTH, e.g. 128x64")
    height, width = int(match.group(1)), int(match.group(2))
    if height < 8 or width < 8 or height > 4096 or width > 4096:
        raise DataError(f"--size {text!r}: height and width must be between 8 and 4096 pixels")
    return height, width


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is a file, expected a folder for the dataset")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: folder is not empty (pass --overwrite to replace its dataset)")


@data_group.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--identities", "-n", default=200, show_default=True, help="Number of identities.")
@click.option("--seed", default=0, show_default=True, help="Random seed (deterministic output).")
@click.option("--size", default="128x64", show_default=True, help="Image size HEIGHTxWIDTH.")
@click.option(
    "--missing-rate",
    default=0.0,
    show_default=True,
    help="Share of identities lacking some modalities (0 <= R < 1).",
)
@click.option("--overwrite", is_flag=True, help="Replace the dataset in a non-empty OUT.")
@click.option(
    "--layout",
    type=click.Choice(["seed", "orbench"]),
    default="seed",
    show_default=True,
    help="seed: text_annos.json and generated protocols; orbench: train_annos.json and "
    "test_gallery_and_queries.json with the 32 ordered query sets over a seeded test share.",
)
@click.option(
    "--test-share",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0.05, 0.95),
    help="With --layout orbench: the share of identities in the evaluation file.",
)
def data_synth(
    out: Path,
    identities: int,
    seed: int,
    size: str,
    missing_rate: float,
    overwrite: bool,
    layout: str,
    test_share: float,
) -> None:
    """Write a synthetic dataset (4 image modalities and captions) in the seed or ORBench layout."""
    hw = parse_size(size)
    if identities < 2:
        raise DataError(f"--identities {identities}: need at least 2 identities")
    if not 0.0 <= missing_rate < 1.0:
        raise DataError(f"--missing-rate {missing_rate}: must be in [0, 1)")
    _check_out(out, overwrite)
    from reid_core.data.synth import synthesize

    summary = synthesize(
        out,
        identities=identities,
        seed=seed,
        size=hw,
        missing_rate=missing_rate,
        overwrite=overwrite,
    )
    if layout == "orbench":
        from reid_core.data.synth_orbench import to_orbench

        summary.update(to_orbench(out, test_share, seed, per_identity=2))
    click.echo(f"wrote {out}")
    for key, value in summary.items():
        if key != "out":
            click.echo(f"  {key}: {value}")


@data_group.command("check")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--quick", is_flag=True, help="Read image headers only (no full decode).")
@click.option("--workers", "-j", type=int, default=None, help="Decoding threads (default: CPUs).")
def data_check(root: Path, quick: bool, workers: int | None) -> None:
    """Decode every image and validate annotations and the evaluation file (exit 2 on problems)."""
    if workers is not None and not 1 <= workers <= MAX_CHECK_WORKERS:
        raise DataError(f"--workers {workers}: must be from 1 to {MAX_CHECK_WORKERS}")
    from reid_core.data.check import check_dataset

    report = check_dataset(root, quick=quick, workers=workers)
    for note in report.warnings:
        stderr(f"warning: {note}")
    click.echo(report.summary())


def _print_stats(stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from reid_core.errors import printable

    root = escape(printable(stats["root"]))  # a folder name is neither markup nor two lines
    table = Table(title=f"{root}  (digest {stats['digest']})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    ids = stats["identities"]
    table.add_row("identities", ", ".join(f"{k} {v}" for k, v in ids.items()))
    table.add_row("images", ", ".join(f"{k} {v}" for k, v in stats["images"].items()))
    caps = stats["captions"]
    table.add_row(
        "captions", f"{caps['count']} from {caps['file']}, coverage {caps['coverage']:.1%} of RGB"
    )
    pk = stats["pk"]
    table.add_row(
        f"usable for P x K (K={pk['k']})",
        f"{pk['usable']} identities ({pk['usable_train']} in train; P={pk['p']})",
    )
    missing = ", ".join(f"{k} {v}" for k, v in stats["missing_per_identity"].items())
    table.add_row("identities lacking", missing)
    if stats["missing_folders"]:
        table.add_row("missing folders", ", ".join(stats["missing_folders"]))
    proto = stats["protocol"]
    if proto:
        sets = ", ".join(f"{k} {v}" for k, v in proto["sets"].items())
        table.add_row(
            "evaluation file",
            f"{proto['gallery_images']} gallery images, {proto['identities']} identities; {sets}",
        )
    Console().print(table)
    for note in stats["warnings"]:
        stderr(f"warning: {note}")


@data_group.command("stats")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_options
def data_stats(
    root: Path,
    as_json: bool,
    preset: str | None,
    config_file: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Identities per split, images per modality, caption coverage, P x K usability."""
    from reid_core.data.check import dataset_stats
    from reid_core.data.dataset_index import build_index

    cfg = load_from_options(preset, config_file, overrides)
    stats = dataset_stats(build_index(root), cfg.data)
    if as_json:
        echo_json(stats)
    else:
        _print_stats(stats)


# ---------------------------------------------------------------------------------------- model
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


def register(root: click.Group) -> None:
    """Add this layer's command groups to the `reid` entry point."""
    root.add_command(config_group)
    root.add_command(data_group)
    root.add_command(model_group)
