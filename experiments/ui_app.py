"""The app `reid ui` serves: MLflow's tracking server with this project's first-visit UI defaults.

MLflow 3.17 keeps two choices in the browser and has no server setting for either: the
sidebar's mode (`mlflow.workflowType_v1`: GenAI by default, which hides the training runs'
pages behind "Evaluations" and "Agent versions") and whether its assistant panel opens by
itself on a local server (`mlflow.assistant.fab.autoOpenedOnFirstLoad_v1`). The UI page served
here sets them, before MLflow's code runs and only where the browser has no choice stored, to
Model training and "already opened once": a click on the toggle still switches and is kept.
Everything else (the API, the security middleware, the pages) is MLflow's own app.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow.server.fastapi_app import app as mlflow_app

DEFAULTS = {
    "mlflow.workflowType_v1": json.dumps("machine_learning"),
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": json.dumps(True),
}
_PAGES = ("/", "/index.html")
_DROPPED = (b"content-length", b"etag", b"last-modified")  # the page is no longer the file


def defaults_script() -> bytes:
    values = json.dumps(DEFAULTS)
    return (
        "<script>(function(){try{var s=window.localStorage,d=" + values + ";"
        "for(var k in d){if(s.getItem(k)===null){s.setItem(k,d[k]);}}}catch(e){}})();</script>"
    ).encode()


def with_defaults(page: bytes) -> bytes:
    """The UI page with `defaults_script` first in its head (unchanged without a head)."""
    head = page.find(b"<head>")
    if head < 0:
        return page
    at = head + len(b"<head>")
    return page[:at] + defaults_script() + page[at:]


class UiDefaults:
    """ASGI middleware: the UI page (GET / or /index.html) gets `defaults_script`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        page = scope["type"] == "http" and scope.get("method") == "GET"
        if not page or scope.get("path") not in _PAGES:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def rewrite(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body, headers = b"".join(chunks), list(start.get("headers", []))
            if start.get("status") == 200 and _html(headers):
                body = with_defaults(body)
                headers = [(k, v) for k, v in headers if k.lower() not in _DROPPED]
                headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def _html(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and b"text/html" in v for k, v in headers)


app = UiDefaults(mlflow_app)
