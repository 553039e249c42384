"""The one output format every bench ends with, collected by `bench/run_all.py` (`make bench`).

FIGURE {"figure": "<name>", "value": <number>, "unit": "<unit>", "target": "<text>",
        "met": true|false|null, "command": "<command that reproduces it>"}
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path

PREFIX = "FIGURE "


def command(script: str, *args: str) -> str:
    """`.venv/bin/python bench/<script> ARGS` as a user would type it from the repository root."""
    return " ".join([".venv/bin/python", f"bench/{Path(script).name}", *map(shlex.quote, args)])


def figure(
    name: str,
    value: float | None,
    unit: str,
    target: str,
    met: bool | None,
    cmd: str,
) -> None:
    """Print one FIGURE line (flushed; a NaN or missing value becomes null, `met` null)."""
    if value is not None and not math.isfinite(float(value)):
        value, met = None, None
    row = {
        "figure": name,
        "value": None if value is None else round(float(value), 6),
        "unit": unit,
        "target": target,
        "met": met,
        "command": cmd,
    }
    print(PREFIX + json.dumps(row), flush=True)


def parse(line: str) -> dict | None:
    """The FIGURE object of one output line, or None when the line is not one."""
    if not line.startswith(PREFIX):
        return None
    try:
        row = json.loads(line[len(PREFIX) :])
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) and "figure" in row else None


def script_args() -> list[str]:
    """This process's arguments, for the command of a figure it prints."""
    return sys.argv[1:]
