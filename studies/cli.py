"""The `reid` entry point: assembles every layer's commands and turns user errors into one line."""

from __future__ import annotations

import os
import sys

import click

from reid_core import __version__
from reid_core.errors import ReidError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="omnireid")
def cli() -> None:
    """OmniReID: multimodal person re-identification (RGB gallery; IR, sketch, colour-pencil and
    text queries) with one CLIP encoder and modality-routed LoRA.

    \b
    Typical day:
      reid data synth demo/data            # or point at ORBench
      reid data check demo/data
      reid train --preset cpu-tiny --data demo/data --out runs/tiny
      reid eval --checkpoint runs/tiny/checkpoints/last.pt --data demo/data
    """


def _assemble() -> click.Group:
    from experiments import cli as experiments_cli
    from reid_core import cli as core_cli
    from studies import commands as study_commands

    core_cli.register(cli)
    experiments_cli.register(cli)
    study_commands.register(cli)
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user mistakes print one line on stderr and exit 2, never a traceback."""
    # A second layer under experiments.registry.load_model's MLmodel check: MLflow itself
    # refuses cloudpickled models in this process (a user's explicit setting wins).
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    group = _assemble()
    try:
        # Without standalone mode click returns `ctx.exit(code)`'s code instead of exiting.
        code = group.main(args=argv, prog_name="reid", standalone_mode=False)
    except ReidError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # click turns a KeyboardInterrupt into Abort; `sigterm_as_interrupt` raises
        # KeyboardInterrupt("signal 15"): exit as a terminated process does (128 + 15), so a
        # scheduler sees SIGTERM; Ctrl-C exits 130
        cause = exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__
        if isinstance(cause, KeyboardInterrupt) and cause.args == ("signal 15",):
            click.echo("terminated (SIGTERM)", err=True)
            return 143
        if isinstance(cause, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            return 130
        click.echo("aborted", err=True)
        return 1
    return code if isinstance(code, int) else 0


def entry() -> None:
    """Console-script entry: exit with `main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
