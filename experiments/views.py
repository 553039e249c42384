"""Saved views of the MLflow runs table: what a link opens with, set by the server.

MLflow 3.17 keeps the runs table's columns and charts in the browser (localStorage); the one
server-side way to choose them is a shared view, an experiment tag
`mlflow.sharedViewState.<key>` that `#/experiments/<id>/runs?viewStateShareKey=<key>` opens
(search filter, sort, columns, and the chart mode's charts). The UI skips the view when the
URL also carries a search or sort parameter, so links name the view alone (`links.view_path`).
A study saves one: its trials ranked by the objective, their sampled params and state, and in
chart mode the objective against each sampled param (docs/TRACKING.md, "Comparing trials").
"""

from __future__ import annotations

import json
import time
from typing import Any

VIEW_TAG = "mlflow.sharedViewState."
_SECTION = "omnireid-study"


def column(kind: str, key: str) -> str:
    """The runs table's name of a column, e.g. ``metrics.`val/best_score` ``."""
    return f"{kind}.`{key}`"


def trials_view(
    parent_run_id: str,
    *,
    rank_by: str,
    ascending: bool,
    metrics: list[str],
    params: list[str],
    tags: list[str],
    curve: str = "val/score",
) -> dict[str, Any]:
    """The state of a view listing the runs nested under `parent_run_id`, best `rank_by`
    first, with `metrics`, `params` and `tags` as columns; its chart mode shows `rank_by`
    against `params` and every run's `curve` over epochs."""
    columns = [column("metrics", k) for k in dict.fromkeys([rank_by, *metrics])]
    columns += [column("params", k) for k in params] + [column("tags", k) for k in tags]
    return {
        "searchFilter": f"tags.mlflow.parentRunId = '{parent_run_id}'",
        "orderByKey": column("metrics", rank_by),
        "orderByAsc": ascending,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
        "columnOrder": columns,  # the objective first; Duration and the rest after
        "columnWidths": {c: 170 for c in columns if c.startswith("metrics.")},  # all digits
        "runsHiddenMode": "SHOW_ALL",  # charts show every trial, not the first 10
        "isAccordionReordered": True,  # the study's chart section stays first
        "compareRunSections": [
            {
                "uuid": _SECTION,
                "name": "study: objective against the sampled params",
                "display": True,
                "isReordered": False,
                "deleted": False,
                "isGenerated": False,
            }
        ],
        "compareRunCharts": comparison_charts(rank_by, params, curve),
    }


def comparison_charts(objective: str, params: list[str], curve: str) -> list[dict[str, Any]]:
    """Chart cards (MLflow's RunsChartsCardConfig fields): parallel coordinates of the params
    and the objective, the objective per run, one scatter per param, the learning curves."""

    def card(kind: str, uuid: str, **fields: Any) -> dict[str, Any]:
        return {"uuid": uuid, "type": kind, "runsCountToCompare": 100, "deleted": False,
                "isGenerated": False, "metricSectionId": _SECTION, **fields}  # fmt: skip

    charts = [
        card("PARALLEL", "parallel", selectedParams=params, selectedMetrics=[objective],
             showAllRuns=True),
        card("BAR", "objective", metricKey=objective),
    ]  # fmt: skip
    for i, param in enumerate(params):
        charts.append(
            card("SCATTER", f"scatter-{i}", xaxis={"key": param, "type": "PARAM"},
                 yaxis={"key": objective, "type": "METRIC"})
        )  # fmt: skip
    charts.append(
        card("LINE", "curve", metricKey=curve, selectedMetricKeys=[curve], xAxisKey="step",
             lineSmoothness=0, scaleType="linear", xAxisScaleType="linear", yAxisKey="metric",
             yAxisExpressions=[], useGlobalXaxisKey=False, useGlobalLineSmoothing=True)
    )  # fmt: skip
    return charts


def save_view(client: Any, experiment_id: str, key: str, name: str, state: dict[str, Any]):
    """Store `state` as the shared view `key` of the experiment (listed by name in the UI)."""
    now = int(time.time() * 1000)
    value = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    client.set_experiment_tag(experiment_id, VIEW_TAG + key, json.dumps(value))


def saved_views(experiment: Any) -> list[tuple[str, str]]:
    """(key, name) of the experiment's shared views, newest first."""
    found = []
    for tag, value in (experiment.tags or {}).items():
        if tag.startswith(VIEW_TAG):
            try:
                view = json.loads(value)
                found.append((int(view["createdAt"]), tag.removeprefix(VIEW_TAG), view["name"]))
            except (ValueError, KeyError, TypeError):
                continue  # a view saved by someone else, in a shape we do not know
    return [(key, name) for _, key, name in sorted(found, reverse=True)]
