"""What `reid study` shows a person: the live trial table, the status and the best trial."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from reid_core.progress import is_interactive
from studies.record import TrialAttr
from studies.spec import StudySpec


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in params.items())


def _latest(trial: Any) -> float | None:
    if trial.user_attrs.get(TrialAttr.VAL_SCORE) is not None:
        return float(trial.user_attrs[TrialAttr.VAL_SCORE])
    values = trial.intermediate_values
    return values[max(values)] if values else None


class TrialView:
    """A rich live table on a terminal; without one, a line per trial event (a state change
    or a new val score)."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self.live: Any = None
        self.seen: dict[int, tuple[str, Any]] = {}

    def __enter__(self) -> TrialView:
        if is_interactive():
            from rich.live import Live

            self.live = Live(refresh_per_second=1, transient=False)
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.stop()

    def update(self, trials: list[Any]) -> None:
        best = self._best(trials)
        if self.live is not None:
            self.live.update(self._table(trials, best))
            return
        for t in trials:
            key = (t.state.name, _latest(t))
            if self.seen.get(t.number) == key or t.state.name == "WAITING":
                continue
            self.seen[t.number] = key
            epoch = t.user_attrs.get(TrialAttr.EPOCH)
            reason = t.user_attrs.get(TrialAttr.FAIL_REASON) if t.state.name == "FAIL" else None
            line = (
                f"trial {t.number} {t.state.name.lower()}"
                + (f" epoch {epoch}" if epoch else "")
                + (f" {self.spec.objective.metric}={_fmt(key[1])}" if key[1] is not None else "")
                + self._value(t)
                + (f" (best {_fmt(best)})" if best is not None else "")
                + (f" [{_params(t.params)}]" if t.params else "")
                + (f": {reason}" if reason else "")
            )
            print(line, file=sys.stdout, flush=True)

    def _value(self, trial: Any) -> str:
        """A complete trial's value, what Optuna ranks (its objective at the best-on-val epoch,
        the run's `val/best_*` in MLflow), beside the latest score."""
        if trial.state.name != "COMPLETE" or not trial.values:
            return ""
        from experiments.headline import best_name

        return f" {best_name(self.spec.objective.metric)}={_fmt(trial.values[0])}"

    def _best(self, trials: list[Any]) -> float | None:
        done = [t.values[0] for t in trials if t.state.name == "COMPLETE" and t.values]
        if not done:
            return None
        return max(done) if self.spec.objective.direction == "maximize" else min(done)

    def _table(self, trials: list[Any], best: float | None) -> Any:
        from rich.table import Table

        table = Table(title=f"study {self.spec.name}: best {_fmt(best)}")
        for col in ("trial", "state", "epoch", "val/score", "value", "params"):
            table.add_column(col, justify="left" if col in ("state", "params") else "right")
        for t in trials:
            value = t.values[0] if t.values else None
            reason = t.user_attrs.get(TrialAttr.FAIL_REASON, "") if t.state.name == "FAIL" else ""
            table.add_row(
                str(t.number),
                t.state.name.lower(),
                _fmt(t.user_attrs.get(TrialAttr.EPOCH)),
                _fmt(_latest(t)),
                _fmt(value),
                (_params(t.params) + (f" ({reason[:60]})" if reason else "")) or "-",
            )
        return table


def print_status(study: Any, spec: StudySpec, st: dict[str, Any]) -> None:
    """`reid study status` for a person."""
    states = ", ".join(f"{v} {k.lower()}" for k, v in st["states"].items() if v)
    click.echo(f"study {st['study']}: {states or 'no trials'} (budget {st['n_trials']})")
    best = st["best"]
    if best is None:
        click.echo("best: none yet")
    else:
        click.echo(
            f"best: trial {best['number']} {spec.objective.metric}={_fmt(best['value'])} "
            f"test score {_fmt(best['test_score'])} run {best['mlflow_run_id']}"
        )
        click.echo(f"      {json.dumps(best['params'])}")
    for r in st["running"]:
        click.echo(
            f"running: trial {r['number']} epoch {r['epoch']} for {r['age_s']:.0f} s "
            f"(val/score {_fmt(r['val_score'])})"
        )


def print_best(study: Any, spec: StudySpec, baseline: Path | None) -> None:
    """The best trial and its test table (its run folder's metrics.json)."""
    from reid_core.errors import ReidError
    from studies.report import best_trial, trial_summary

    best = best_trial(study, spec)
    if best is None:
        raise ReidError(f"study {study.study_name}: no completed trial yet")
    s = trial_summary(best)
    click.echo(
        f"best trial {s['number']} of study {study.study_name}: "
        f"{spec.objective.metric}={_fmt(s['value'])}, test score {_fmt(s['test_score'])}"
    )
    click.echo(f"params: {json.dumps(s['params'])}")
    click.echo(f"mlflow run: {s['mlflow_run_id']}")
    metrics = Path(best.user_attrs.get(TrialAttr.RUN_DIR, "")) / "metrics.json"
    if metrics.is_file():
        from experiments.tables import print_metrics

        print_metrics(json.loads(metrics.read_text(encoding="utf-8")), title="best trial, test")
    if baseline is not None:
        from reid_core.safeio import read_json

        base = read_json(baseline, ReidError, limit=16 << 20, what="a metrics.json")
        if not (isinstance(base, dict) and isinstance(base.get("score"), int | float)):
            raise ReidError(f"--baseline {baseline}: not a metrics.json (no numeric score)")
        ratio = s["test_score"] / base["score"] if s["test_score"] and base["score"] else None
        click.echo(
            f"untrained baseline test score {base['score']:.4f} -> best trial "
            f"{_fmt(s['test_score'])}" + (f" ({ratio:.1f}x)" if ratio else "")
        )
