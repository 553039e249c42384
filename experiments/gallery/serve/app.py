"""The search service: `POST /search` ranks a gallery index against a query of uploaded images
and a caption; `GET /healthz`; `GET /thumbnail/{row}`; the search page at `/`.

Every bad request gets a 4xx whose JSON `detail` is one line: no query at all, an image that
does not decode or is too large, an unknown form field, a `top` out of range. The limits hold
under load: the request body is capped before it is parsed (`limits.BodyLimit`), an image's
pixel count and mode are checked from its header before it is decoded (the same
`reid_core.data.images` rules as training and `reid search`), and at most `MAX_ACTIVE` requests
hold uploads in memory while one at a time decodes and embeds, so memory stays bounded however
many clients upload at once (docs/SERVING.md gives the measured figure).
"""

from __future__ import annotations

import base64
import functools
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from experiments.gallery.search import MAX_TEXT, TextTooLongError, check_text
from experiments.gallery.serve.limits import BodyLimit
from experiments.gallery.serve.page import PAGE
from reid_core.data.images import MAX_PIXELS, BadImageError, ImageTooLargeError
from reid_core.errors import ReidError, printable

IMAGE_FIELDS = ("nir", "sk", "cp")
FIELDS = (*IMAGE_FIELDS, "text", "top")
MAX_TOP = 100
MAX_ACTIVE = 4  # requests holding their uploads in memory at once (the rest wait)
FORM_OVERHEAD = 64 << 10  # multipart boundaries, headers, a caption and `top`
THUMB_SIZE = (96, 192)
__all__ = ["MAX_PIXELS", "MAX_TEXT", "create_app"]


def _one_line(text: object) -> str:
    return printable(" ".join(str(text).split()))[:300]


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
    """The upload's bytes, its header checked (size, pixels, mode) without decoding; None if
    absent. Decoding happens once, in the model, on the embedding thread."""
    from reid_core.data.images import open_image

    if upload is None or isinstance(upload, str):
        return None
    data = upload.file.read(max_bytes + 1)
    if not data and not upload.filename:
        return None  # an empty file input
    if len(data) > max_bytes:
        raise HTTPException(413, f"{name}: image larger than {max_bytes} bytes")
    try:
        open_image(data, name).close()
    except ImageTooLargeError as exc:
        raise HTTPException(413, f"{name}: {_one_line(exc.reason)}") from None
    except BadImageError as exc:
        raise HTTPException(
            400, f"{name}: not a decodable image ({_one_line(exc.reason)})"
        ) from None
    return data


def _query_rows(nir, sk, cp, text: str | None, max_bytes: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, upload in zip(IMAGE_FIELDS, (nir, sk, cp), strict=True):
        data = _read_image(name, upload, max_bytes)
        if data is not None:
            b64 = base64.b64encode(data).decode("ascii")
            rows.append({"query_id": "q", "modality": name, "image_b64": b64})
    if text:  # an empty field is no caption; a blank one is refused as by `reid search`
        try:
            rows.append({"query_id": "q", "modality": "text", "text": check_text(text, "text")})
        except TextTooLongError as exc:
            raise HTTPException(413, _one_line(exc)) from None
        except ReidError as exc:
            raise HTTPException(400, _one_line(exc)) from None
    if not rows:
        raise HTTPException(400, "no query: give at least one of nir, sk, cp or text")
    return rows


def create_app(model: Any, index: Any, kind: str = "exact", max_bytes: int = 8 << 20) -> FastAPI:
    """The service over a loaded pyfunc `model` and the gallery index it built."""
    from experiments.gallery.index import describe
    from experiments.gallery.search import embed_rows, rank_index

    app = FastAPI(
        title="OmniReID search",
        description="Rank an RGB gallery against infrared, sketch, colour-pencil and text queries.",
        version="1",
    )
    app.add_middleware(BodyLimit, max_bytes=len(IMAGE_FIELDS) * max_bytes + FORM_OVERHEAD)
    # One thread decodes and embeds, one request at a time (the model is not shared). One
    # thread, not a lock: the C allocator keeps a pool per thread, and decoding in whichever
    # request thread held the lock left every pool holding a decoded image (12 uploads of a
    # 35 Mpixel PNG grew the server by 1.7 GB; on one thread, by the size of one).
    embedder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnireid-embed")
    active = threading.BoundedSemaphore(MAX_ACTIVE)

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
        with active:  # uploads enter memory only here; the rest wait with theirs spooled
            rows = _query_rows(nir, sk, cp, text, max_bytes)
            try:
                vector = embedder.submit(embed_rows, model, rows).result()
            except ImageTooLargeError as exc:
                raise HTTPException(413, _one_line(exc)) from None
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
        # decoded on the same single thread as queries, for the same reason (memory)
        return Response(embedder.submit(_thumbnail, index, row).result(), media_type="image/jpeg")

    return app


@functools.lru_cache(maxsize=2048)
def _thumb_bytes(path: str) -> bytes:
    from reid_core.data.images import load_image

    img = load_image(path).convert("RGB")
    img.thumbnail(THUMB_SIZE)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _thumbnail(index: Any, row: int) -> bytes:
    try:
        return _thumb_bytes(str(index.file(row)))
    except ReidError:
        raise HTTPException(404, f"gallery row {row}: the image is gone or unreadable") from None
