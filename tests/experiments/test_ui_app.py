"""`reid ui`'s app: MLflow's own, with the UI page carrying the first-visit defaults; and the
saved view a study's link opens."""

from __future__ import annotations

import asyncio
import json


def _call(app, path, method="GET"):
    """One request through an ASGI app; returns (status, headers, body)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:5000")]}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def _page_app(page: bytes, content_type=b"text/html; charset=utf-8"):
    async def app(scope, receive, send):
        headers = [(b"content-type", content_type), (b"content-length", str(len(page)).encode()),
                   (b"etag", b'"abc"')]  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": page[:10], "more_body": True})
        await send({"type": "http.response.body", "body": page[10:]})

    return app


def test_the_ui_page_sets_the_defaults_before_mlflow_runs():
    from experiments.ui_app import DEFAULTS, UiDefaults

    page = b"<!doctype html><html><head><script src=main.js></script></head><body></body></html>"
    status, headers, body = _call(UiDefaults(_page_app(page)), "/")
    assert status == 200
    script = body[body.index(b"<head>") + 6 : body.index(b"<script src=main.js>")]
    assert b"machine_learning" in script and b"autoOpenedOnFirstLoad" in script
    assert b"getItem(k)===null" in script  # a choice the browser holds is kept
    assert int(headers[b"content-length"]) == len(body) and b"etag" not in headers
    assert json.loads(DEFAULTS["mlflow.workflowType_v1"]) == "machine_learning"
    # everything else is MLflow's, untouched
    assert _call(UiDefaults(_page_app(page)), "/ajax-api/2.0/mlflow/runs/get")[2] == page
    js = _page_app(b"var x = '<head>';", b"application/javascript")
    assert _call(UiDefaults(js), "/")[2] == b"var x = '<head>';"


def test_mlflow_serves_its_page_with_the_defaults():
    from starlette.testclient import TestClient

    from experiments.ui_app import app

    page = TestClient(app, base_url="http://127.0.0.1:5000").get("/")
    body = page.content
    assert page.status_code == 200 and body.startswith(b"<!doctype html>")
    assert b"mlflow.workflowType_v1" in body and b"static-files/static/js/main." in body


def test_a_trials_view_ranks_the_study_and_charts_the_objective_against_the_params():
    from experiments.views import trials_view

    state = trials_view(
        "p1", rank_by="val/best_score", ascending=False, metrics=["test/score"],
        params=["optim.lr.head", "model.lora.rank"], tags=["optuna.state"],
    )  # fmt: skip
    assert state["searchFilter"] == "tags.mlflow.parentRunId = 'p1'"
    assert state["orderByKey"] == "metrics.`val/best_score`" and state["orderByAsc"] is False
    assert state["selectedColumns"] == [
        "metrics.`val/best_score`", "metrics.`test/score`", "params.`optim.lr.head`",
        "params.`model.lora.rank`", "tags.`optuna.state`",
    ]  # fmt: skip
    charts = {c["uuid"]: c for c in state["compareRunCharts"]}
    assert charts["parallel"]["selectedParams"] == ["optim.lr.head", "model.lora.rank"]
    assert charts["parallel"]["selectedMetrics"] == ["val/best_score"]
    assert charts["scatter-1"]["xaxis"] == {"key": "model.lora.rank", "type": "PARAM"}
    assert {c["metricSectionId"] for c in charts.values()} == {
        s["uuid"] for s in state["compareRunSections"]
    }
