"""Run every benchmark in bench/ and rewrite the generated block of docs/BENCHMARKS.md.

Each bench in `REGISTRY` runs as its own subprocess with its own timeout; the `FIGURE {json}`
lines it prints (bench/figures.py) become one table row each. A bench that is missing, fails,
times out or prints no figure gets a row saying so, and the runner carries on. Only the block
between `<!-- bench:begin -->` and `<!-- bench:end -->` is rewritten (the file is re-read right
before the write: other people edit the prose below it); without the markers the block goes
right under the page title.

    .venv/bin/python bench/run_all.py              # make bench: everything (< 30 min here)
    .venv/bin/python bench/run_all.py --quick      # make bench-quick: the fast half
    .venv/bin/python bench/run_all.py --only startup,metrics --no-write
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from figures import parse  # noqa: E402

DOC = REPO / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
LIBRARIES = ("torch", "numpy", "mlflow", "optuna")


@dataclass(frozen=True)
class Bench:
    name: str
    script: str  # file in bench/
    args: tuple[str, ...] = ()
    quick: bool = False  # part of `make bench-quick`
    timeout_s: int = 600
    owner: str = ""  # who writes the script, for a "not present" row

    @property
    def command(self) -> str:
        return " ".join([".venv/bin/python", f"bench/{self.script}", *map(shlex.quote, self.args)])


# Timeouts are ~3x a quiet run here; the sum of the quiet runs stays well under 30 minutes.
REGISTRY: tuple[Bench, ...] = (
    Bench("startup", "startup_bench.py", quick=True, timeout_s=120),
    Bench("metrics", "metrics_bench.py", quick=True, timeout_s=300),
    Bench("index", "index_bench.py", quick=True, timeout_s=300),
    Bench("eval-encode", "eval_encode_bench.py", ("--identities", "30"), quick=True, timeout_s=300),
    # 100k rows only: the default sweep adds 1M rows (2 GiB, an HNSW build of many minutes here)
    Bench(
        "gallery-index",
        "gallery_index_bench.py",
        ("--rows", "100000"),
        timeout_s=600,
        owner="helper",
    ),
    Bench("lora", "lora_bench.py", timeout_s=900),
    Bench("tracking", "tracking_bench.py", timeout_s=600),
    Bench("study-overhead", "study_overhead_bench.py", timeout_s=900, owner="lead"),
    Bench("pruning", "pruning_bench.py", timeout_s=600, owner="lead"),
    Bench("step", "step_bench.py", timeout_s=2400),
)


@dataclass
class Outcome:
    bench: Bench
    status: str  # ok | missing | failed | timeout | skipped
    wall_s: float = 0.0
    figures: list[dict] = field(default_factory=list)
    detail: str = ""


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "load": " / ".join(f"{x:.2f}" for x in load),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def run_bench(bench: Bench, timeout_s: float, log_dir: Path) -> Outcome:
    script = HERE / bench.script
    if not script.is_file():
        who = f" ({bench.owner}'s, not written yet)" if bench.owner else ""
        return Outcome(bench, "missing", detail=f"not present: bench/{bench.script}{who}")
    if timeout_s <= 0:
        return Outcome(bench, "skipped", detail="skipped: the run's time budget was spent")
    cmd = [sys.executable, str(script), *bench.args]
    log = log_dir / f"{bench.name}.log"
    print(f"== {bench.name}: {bench.command} (timeout {timeout_s:.0f} s)", flush=True)
    start = time.perf_counter()
    with open(log, "w+", encoding="utf-8") as out:
        try:
            done = subprocess.run(
                cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, text=True
            )
            code: int | None = done.returncode
        except subprocess.TimeoutExpired:
            code = None
        out.seek(0)
        text = out.read()
    wall = time.perf_counter() - start
    figures = [row for row in map(parse, text.splitlines()) if row is not None]
    for row in figures:
        print("   " + row["figure"] + f": {row['value']} {row['unit']}", flush=True)
    if code is None:
        return Outcome(bench, "timeout", wall, figures, f"timed out after {timeout_s:.0f} s")
    if code != 0:
        return Outcome(bench, "failed", wall, figures, f"failed (exit {code}): {last_line(text)}")
    if not figures:
        return Outcome(bench, "failed", wall, detail="exited 0 but printed no FIGURE line")
    return Outcome(bench, "ok", wall, figures)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(row: dict) -> str:
    value = row.get("value")
    if value is None:
        return "n/a"
    number = f"{value:.4g}" if isinstance(value, int | float) else str(value)
    return f"{number} {row.get('unit', '')}".strip()


def _status(row: dict) -> str:
    met = row.get("met")
    return "met" if met is True else "short" if met is False else "-"


def render(info: dict[str, str], outcomes: list[Outcome], how: str, total_s: float) -> str:
    half = {"quick": "`make bench-quick` (the fast half)", "all": "`make bench`"}.get(
        how, f"`bench/run_all.py --only {how}`"
    )
    lines = [
        BEGIN,
        "<!-- Generated by bench/run_all.py: edits between these markers are overwritten. -->",
        "",
        f"Generated by {half} on {info['started']} in {total_s / 60:.1f} min. "
        "Every value below was measured in that run; ratios compare two sides measured in one "
        "process or one run.",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores",
        f"- load average at start (1 / 5 / 15 min): {info['load']}",
        f"- {info['versions']}",
        "",
        "| figure | value | target | status | command |",
        "| --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        for row in o.figures:
            lines.append(
                f"| {_cell(row['figure'])} | {_cell(_value(row))} | {_cell(row.get('target', '-'))}"
                f" | {_status(row)} | `{_cell(row.get('command', o.bench.command))}` |"
            )
        if o.status != "ok":
            lines.append(f"| {o.bench.name} | - | - | {_cell(o.detail)} | `{o.bench.command}` |")
    walls = ", ".join(f"{o.bench.name} {o.wall_s:.0f} s" for o in outcomes if o.wall_s)
    lines += ["", f"Wall time per bench: {walls}.", "", END]
    return "\n".join(lines)


def splice(text: str, block: str) -> str:
    """`text` with the generated block replaced (or inserted under the first `# ` title)."""
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    lines = text.splitlines(keepends=True)
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    return "".join(lines[:at]) + "\n" + block + "\n" + "".join(lines[at:])


def write_doc(block: str, path: Path = DOC) -> None:
    """Re-read the page now and replace only the block, atomically (one os.replace)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    fd, tmp = tempfile.mkstemp(prefix=".BENCHMARKS.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(splice(text, block))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the benches marked quick")
    parser.add_argument("--only", default="", help="comma list of bench names")
    parser.add_argument("--budget-s", type=float, default=28 * 60, help="whole-run time limit")
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    chosen = [b for b in REGISTRY if b.quick or not args.quick]
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {b.name for b in REGISTRY}
        if unknown:
            parser.error(f"unknown bench {sorted(unknown)}; known: {[b.name for b in REGISTRY]}")
        chosen = [b for b in chosen if b.name in names]
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores, load {info['load']}; {info['versions']}")
    log_dir = Path(tempfile.mkdtemp(prefix="omnireid-bench-"))
    start = time.perf_counter()
    outcomes = []
    for bench in chosen:
        left = args.budget_s - (time.perf_counter() - start)
        outcomes.append(run_bench(bench, min(bench.timeout_s, left), log_dir))
        if outcomes[-1].status != "ok":
            print(f"   {outcomes[-1].detail}", flush=True)
    how = args.only or ("quick" if args.quick else "all")
    block = render(info, outcomes, how, time.perf_counter() - start)
    print(block)
    print(f"full output of each bench: {log_dir}")
    if not args.no_write:
        write_doc(block, args.doc)
        print(f"wrote the generated block of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
