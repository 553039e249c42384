"""PostgreSQL restarted while two workers run: they wait for it and the study completes.

The test starts its own throwaway cluster (initdb/pg_ctl under a temporary folder), never the
shared server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.studies.conftest import reid, trials, write_spec

pytestmark = [pytest.mark.postgres, pytest.mark.integration, pytest.mark.slow]
BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _as_postgres(*cmd: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return list(cmd)


@pytest.fixture
def throwaway_pg():
    if not BINS:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    bin_dir = Path(BINS[-1])
    folder = Path(tempfile.mkdtemp(prefix="omnireid-pg-"))
    folder.chmod(0o777)
    data = folder / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    init = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    subprocess.run(_as_postgres(*init), check=True, capture_output=True, timeout=120)
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(folder / "log")]

    def pg_ctl(*args: str) -> None:
        subprocess.run(_as_postgres(*ctl, *args), check=True, capture_output=True, timeout=120)

    pg_ctl("start", "-w")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", pg_ctl
    finally:
        subprocess.run(_as_postgres(*ctl, "stop", "-m", "immediate"), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_workers_ride_out_a_postgres_restart(tmp_path, study_root, throwaway_pg):
    url, pg_ctl = throwaway_pg
    overrides = {"overrides.train.epochs": 4, "overrides.train.max_steps_per_epoch": 3}
    path = write_spec(tmp_path, "pg-restart", budget={"n_trials": 4}, **overrides)
    proc = reid(
        "study", "run", str(path), "--data", str(study_root), "--workers", "2",
        "--storage", url, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
        cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if any(t.user_attrs.get("epoch") for t in trials(url, "pg-restart")):
                break
        except Exception:  # not created yet
            pass
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[0]
    pg_ctl("restart", "-m", "fast", "-w")  # drops every connection mid-trial
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, out
    got = trials(url, "pg-restart")
    assert not [t for t in got if t.state.name in ("RUNNING", "WAITING")], out
    done = [t for t in got if t.state.name == "COMPLETE"]
    failed = [t for t in got if t.state.name == "FAIL"]
    assert len(done) + len([t for t in failed if "fail_reason" in t.user_attrs]) == 4, out
    assert len(done) >= 3, out  # at most the trial in flight may fail, cleanly, with its reason
