"""What a study says about itself: its best trial, its status, its parent run's tags and plots."""

from __future__ import annotations

import io
import time
import warnings
from typing import Any

from studies.record import TrialAttr, read_record
from studies.spec import StudySpec

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def best_trial(study: Any, spec: StudySpec) -> Any | None:
    """The best trial: by the objective (val only); for two objectives the Pareto trial the
    spec's `pareto_best` rule picks. None before any trial completes."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    if not spec.multi_objective:
        return study.best_trial
    front = study.best_trials
    sign = 1 if spec.objective.direction == "maximize" else -1
    first = max(front, key=lambda t: sign * t.values[0])
    if spec.pareto_best.rule == "first":
        return first
    near = [t for t in front if abs(t.values[0] - first.values[0]) <= spec.pareto_best.tolerance]
    sign2 = 1 if spec.directions[1] == "maximize" else -1
    return max(near, key=lambda t: (sign2 * t.values[1], sign * t.values[0]))


def trial_value(trial: Any) -> float | list[float] | None:
    if trial.values is None:
        return None
    return trial.values[0] if len(trial.values) == 1 else list(trial.values)


def status(study: Any, spec: StudySpec) -> dict[str, Any]:
    """`reid study status --json`: states, best trial, running trials with epoch and age."""
    trials = study.get_trials(deepcopy=False)
    states = {s: 0 for s in STATES}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    best = best_trial(study, spec)
    record = read_record(study)
    now = time.time()
    running = [
        {
            "number": t.number,
            "epoch": int(t.user_attrs.get(TrialAttr.EPOCH, 0)),
            "age_s": round(now - t.datetime_start.timestamp(), 1) if t.datetime_start else 0.0,
            "val_score": t.user_attrs.get(TrialAttr.VAL_SCORE),
            "mlflow_run_id": t.user_attrs.get(TrialAttr.RUN_ID),
        }
        for t in trials
        if t.state.name == "RUNNING"
    ]
    return {
        "study": study.study_name,
        "objective": spec.objective.metric,
        "direction": spec.objective.direction,
        "n_trials": record.n_trials,
        "states": states,
        "best": None if best is None else trial_summary(best),
        "running": running,
        "mlflow_parent_run_id": record.parent_run_id,
        "completed": record.completed,
    }


def trial_summary(trial: Any) -> dict[str, Any]:
    return {
        "number": trial.number,
        "value": trial_value(trial),
        "params": dict(trial.params),
        "mlflow_run_id": trial.user_attrs.get(TrialAttr.RUN_ID),
        "test_score": trial.user_attrs.get(TrialAttr.TEST_SCORE),
    }


def best_tags(study: Any, spec: StudySpec) -> dict[str, Any]:
    """Best-so-far and trial counts for the parent run's tags (params cannot change)."""
    st = status(study, spec)
    tags: dict[str, Any] = {f"trials.{k.lower()}": str(v) for k, v in st["states"].items()}
    best = st["best"]
    if best is not None:
        tags.update(
            {
                "best.trial": str(best["number"]),
                "best.value": str(best["value"]),
                "best.params": best["params"],
                "best.mlflow_run_id": best["mlflow_run_id"] or "",
                "best.test_score": str(best["test_score"]),
            }
        )
    return tags


def study_plots(study: Any) -> dict[str, bytes | str]:
    """Optimisation history, parameter importances and parallel coordinates (matplotlib PNGs)
    and the table of trials (CSV); a plot Optuna cannot draw yet is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    files: dict[str, bytes | str] = {"trials.csv": study.trials_dataframe().to_csv(index=False)}
    multi = len(study.directions) > 1
    plots = {
        "optimization_history.png": ovm.plot_optimization_history,
        "param_importances.png": ovm.plot_param_importances,
        "parallel_coordinate.png": ovm.plot_parallel_coordinate,
    }
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                kwargs = {"target": lambda t: t.values[0], "target_name": "objective 0"}
                ax = plot(study, **(kwargs if multi else {}))
            except (ValueError, RuntimeError, ZeroDivisionError, optuna.exceptions.OptunaError):
                continue  # e.g. importances need two completed trials with varied params
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(9, 5)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        files[name] = buf.getvalue()
    return files
