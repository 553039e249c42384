"""`reid --help` (and the data commands' help) import neither torch, mlflow nor optuna."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "mlflow", "optuna", "open_clip", "numpy", "PIL")
PROBE = """
import contextlib, io, json, sys
from studies.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(m for m in %r if m in sys.modules),
                  "out": out.getvalue()}))
"""


def _probe(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--help",), ("data", "--help"), ("data", "check", "--help")])
def test_help_imports_nothing_heavy(args: tuple[str, ...]) -> None:
    result = _probe(*args)
    assert result["code"] == 0 and "Usage: reid" in result["out"]
    assert result["loaded"] == [], f"reid {' '.join(args)} imported {result['loaded']}"
