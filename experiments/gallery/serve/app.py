"""The search service: `POST /search` ranks a gallery index against a query of uploaded images
and a caption; `GET /healthz`; `GET /thumbnail/{row}`; the search page at `/`.

Every bad request gets a 4xx whose JSON `detail` is one line: no query at all, an image that
does not decode or is too large, an unknown form field, a `top` out of range.
"""

from __future__ import annotations

import base64
import functools
import io
import threading
from typing import Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from experiments.gallery.serve.page import PAGE
from reid_core.errors import ReidError

IMAGE_FIELDS = ("nir", "sk", "cp")
FIELDS = (*IMAGE_FIELDS, "text", "top")
MAX_TOP = 100
MAX_PIXELS = 40_000_000  # a decompression bomb is refused before it is decoded
MAX_TEXT = 2_000
THUMB_SIZE = (96, 192)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


async def _known_fields(request: Request) -> None:
    """Refuse form fields the API does not define (FastAPI would silently drop them)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise HTTPException(415, "send a multipart form (fields nir, sk, cp, text, top)")
    form = await request.form()  # parsed once: FastAPI reads the same cached form
    unknown = sorted(set(form.keys()) - set(FIELDS))
    if unknown:
        raise HTTPException(
            400, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}"
        )


def _read_image(name: str, upload: UploadFile | None, max_bytes: int) -> bytes | None:
    """The upload's bytes, checked to be one decodable image within the limits; None if absent."""
    from PIL import Image

    if upload is None or isinstance(upload, str):
        return None
    data = upload.file.read(max_bytes + 1)
    if not data and not upload.filename:
        return None  # an empty file input
    if len(data) > max_bytes:
        raise HTTPException(413, f"{name}: image larger than {max_bytes} bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise HTTPException(413, f"{name}: image of {img.width}x{img.height} pixels")
            img.load()
    except HTTPException:
        raise
    except Exception as exc:  # PIL raises many kinds for undecodable bytes
        raise HTTPException(400, f"{name}: not a decodable image ({_one_line(exc)})") from None
    return data


def create_app(model: Any, index: Any, kind: str = "exact", max_bytes: int = 8 << 20) -> FastAPI:
    """The service over a loaded pyfunc `model` and the gallery index it built."""
    from experiments.gallery.index import describe
    from experiments.gallery.search import embed_rows, rank_index

    app = FastAPI(
        title="OmniReID search",
        description="Rank an RGB gallery against infrared, sketch, colour-pencil and text queries.",
        version="1",
    )
    lock = threading.Lock()  # one embedding at a time: the model is not meant to be shared

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"detail": _one_line(f"{where}: {first.get('msg', exc)}")}, 422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": describe(index.meta["model"]),
            "gallery": len(index.paths),
            "kind": kind,
        }

    @app.post("/search", dependencies=[Depends(_known_fields)])
    def search(
        nir: UploadFile | None = File(None, description="infrared image"),
        sk: UploadFile | None = File(None, description="sketch image"),
        cp: UploadFile | None = File(None, description="colour-pencil image"),
        text: str | None = Form(None, description="caption"),
        top: int = Form(10, ge=1, le=MAX_TOP, description="how many gallery images"),
    ) -> dict[str, list[dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        for name, upload in zip(IMAGE_FIELDS, (nir, sk, cp), strict=True):
            data = _read_image(name, upload, max_bytes)
            if data is not None:
                b64 = base64.b64encode(data).decode("ascii")
                rows.append({"query_id": "q", "modality": name, "image_b64": b64})
        if text is not None and text.strip():
            if len(text) > MAX_TEXT:
                raise HTTPException(413, f"text: longer than {MAX_TEXT} characters")
            rows.append({"query_id": "q", "modality": "text", "text": text.strip()})
        if not rows:
            raise HTTPException(400, "no query: give at least one of nir, sk, cp or text")
        try:
            with lock:
                vector = embed_rows(model, rows)
        except ReidError as exc:
            raise HTTPException(400, _one_line(exc)) from None
        results = [
            {
                "rank": m.rank,
                "score": m.score,
                "path": m.path,
                "identity": m.identity,
                "thumbnail": f"/thumbnail/{row}",
            }
            for row, m in rank_index(index, vector, top, kind)
        ]
        return {"results": results}

    @app.get("/thumbnail/{row}", responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(row: int) -> Response:
        if not 0 <= row < len(index.paths):
            raise HTTPException(404, f"no gallery row {row}")
        return Response(_thumbnail(index, row), media_type="image/jpeg")

    return app


@functools.lru_cache(maxsize=2048)
def _thumb_bytes(path: str) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail(THUMB_SIZE)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _thumbnail(index: Any, row: int) -> bytes:
    try:
        return _thumb_bytes(str(index.file(row)))
    except OSError:
        raise HTTPException(404, f"gallery row {row}: the image is gone from the gallery") from None
