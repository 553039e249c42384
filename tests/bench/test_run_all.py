"""bench/run_all.py: figures collected, failures and timeouts reported, only the block rewritten."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def run_all(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("run_all_under_test", BENCH / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


GOOD = """
from figures import figure
print("some progress")
figure("speed", 4.5, "x", ">= 4", True, "python good.py")
figure("size", 2.0, "MiB", "<= 1", False, "python good.py")
"""


def test_registry_lists_every_bench_file_and_the_others(run_all):
    names = {b.script for b in run_all.REGISTRY}
    on_disk = {p.name for p in BENCH.glob("*_bench.py")}
    assert on_disk <= names
    assert {"study_overhead_bench.py", "pruning_bench.py", "gallery_index_bench.py"} <= names
    assert any(b.quick for b in run_all.REGISTRY) and not all(b.quick for b in run_all.REGISTRY)


def test_rows_for_good_failing_slow_and_missing_benches(run_all, tmp_path, monkeypatch):
    for name, body in {
        "good.py": GOOD,
        "bad.py": "import sys\nprint('boom: no data')\nsys.exit(3)\n",
        "slow.py": "import time\ntime.sleep(30)\n",
        "silent.py": "print('nothing')\n",
    }.items():
        (tmp_path / name).write_text(body)
    (tmp_path / "figures.py").write_text((BENCH / "figures.py").read_text())
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    registry = tuple(
        run_all.Bench(n, f"{n}.py", timeout_s=t, owner="lead" if n == "gone" else "")
        for n, t in (("good", 60), ("bad", 60), ("slow", 1), ("silent", 60), ("gone", 60))
    )
    monkeypatch.setattr(run_all, "REGISTRY", registry)
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Prose\n\nkept as it is\n")
    assert run_all.main(["--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n") and text.endswith("## Prose\n\nkept as it is\n")
    assert "| speed | 4.5 x | >= 4 | met | `python good.py` |" in text
    assert "| size | 2 MiB | <= 1 | short | `python good.py` |" in text
    assert "failed (exit 3): boom: no data" in text
    assert "timed out after 1 s" in text
    assert "exited 0 but printed no FIGURE line" in text
    assert "not present: bench/gone.py (lead's, not written yet)" in text
    assert "load average at start" in text and "torch " in text

    # a second run replaces the block only, keeping prose others wrote meanwhile
    doc.write_text(text.replace("kept as it is", "kept as it is\n\n## Added by someone else"))
    monkeypatch.setattr(run_all, "REGISTRY", registry[:1])
    run_all.main(["--doc", str(doc)])
    again = doc.read_text()
    assert again.count(run_all.BEGIN) == 1 and "## Added by someone else" in again
    assert "boom" not in again and "| speed | 4.5 x |" in again
