"""The service's request-body cap, enforced before anything parses or spools the body.

A pure ASGI middleware (no dependency on a framework version): a `Content-Length` over the cap
is answered 413 at once, without reading a byte; a body sent without one (chunked) is counted
as it arrives and refused the moment it passes the cap, so a 300 MB upload never reaches the
multipart parser's temporary files.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException

Scope = dict[str, Any]


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body passes the cap (FastAPI answers it 413)."""


def too_large_detail(max_bytes: int) -> str:
    return f"request body larger than {max_bytes} bytes"


class BodyLimit:
    """Refuse (413) a request body over `max_bytes` before it is parsed or spooled."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await _reply(send, 400, "malformed Content-Length header")
            return
        if declared > self.max_bytes:
            await _reply(send, 413, too_large_detail(self.max_bytes))
            return
        seen = 0
        started = False

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(413, too_large_detail(self.max_bytes))
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except BodyTooLarge as exc:  # raised outside FastAPI's own handling
            if started:
                raise
            await _reply(send, 413, str(exc.detail))


def _content_length(scope: Scope) -> int | None:
    """The declared length; 0 when none is declared; None when it is malformed."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 19 else None
    return 0


async def _reply(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
