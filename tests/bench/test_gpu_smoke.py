"""bench/gpu_smoke.py: the no-CUDA exit and a CPU dry run of the same code path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_smoke.py"
pytestmark = pytest.mark.integration


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_no_cuda_is_a_clear_message_and_exit_0():
    done = _run(env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()
    assert json.loads(line) == {"status": "skipped", "reason": "no CUDA device available"}
    assert "no CUDA device" in done.stderr and "Traceback" not in done.stderr


def _dry_run(*extra: str) -> dict:
    done = _run("--device", "cpu", "--preset", "micro", "--steps", "2", "--warmup", "0", *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = done.stdout.strip().splitlines()  # one JSON line, progress on stderr
    return json.loads(line)


@pytest.mark.slow
def test_cpu_dry_run_reports_every_figure():
    report = _dry_run("--no-compile", "--tiny-epochs", "0")
    assert report["status"] == "ok" and report["autocast"] == "bf16"
    assert report["batch"] == 8 and report["steps"] == 2 and report["losses_finite"]
    assert report["flops_per_step"] > 0 and 0 < report["mfu"] < 1
    assert report["samples_per_s"] > 0 and report["peak_memory_gib"] > 0
    assert report["eval"]["sets"] == 15 and 0 <= report["eval"]["score"] <= 1
    assert report["compiled_step"] is None and report["cpu_tiny"] is None
