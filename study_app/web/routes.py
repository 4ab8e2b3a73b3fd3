"""What the study's web server adds to Streamlit's: the case-image and tile routes, security headers.

Case images are not static files. ``/case-image/<case id><suffix>?session=<token>`` answers only a
live reader session that is assigned that case, and every refusal is the same bare 403, so the
route tells a stranger nothing (not even whether a case exists). Whole-slide cases are read tile by
tile, ``/case-tiles/<case id>_files/<level>/<col>_<row><suffix>?session=<token>``, under the same
rule; ``/viewer-lib/`` serves OpenSeadragon itself (installed by ``make setup``, never from a CDN).

Images carry no ETag or Last-Modified, and are never compressed on the way (``no-transform``; the
GZip middleware leaves images alone): every served image has one byte length, every tile the byte
length of its name, and nothing else in the headers may differ by class.

``POST /case-answer?session=<token>`` stores one answer of a live reader session and replies with
the reader's position afterwards (``study_app.web.reading``). ``/organiser-download/<name>`` serves the
organiser's files (answers and truth) to a live organiser session only (``study_app.web.exports``).

Every response gets a content security policy, ``frame-ancestors 'none'`` with X-Frame-Options (no
page of the study can be framed by another site), no referrer (the URL holds the session token) and
no cross-origin sharing. Streamlit's metrics, static-file, media and upload routes answer 404: the
study uses none of them, and ``/media/`` would serve any file it held to anyone with its address.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from study_app.web.exports import DOWNLOAD_ROUTE, download
from study_app.web.gate import ORGANISER, current_gate
from study_app.web.reading import ANSWER_ROUTE, reader_position, record_answer
from urcdm.deepzoom.assets import openseadragon_folder

IMAGE_ROUTE, TILE_ROUTE, VIEWER_ROUTE = "/case-image", "/case-tiles", "/viewer-lib"
BLOCKED_PREFIXES = ("/_stcore/metrics", "/app/static", "/media/", "/_stcore/upload_file")
NOT_STORED = {"Cache-Control": "no-store, no-transform"}
MAX_ANSWER_BYTES = 4096
# Streamlit's front end needs inline styles and scripts, blob: workers and its own websocket;
# nothing may come from another origin, and no other site may frame the study.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:", "font-src 'self' data:", "connect-src 'self'", "worker-src 'self' blob:",
    "frame-src 'self' blob: data:", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
    "frame-ancestors 'none'"])
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_DROPPED = {b"access-control-allow-origin", b"access-control-allow-credentials"} | {name for name, _ in SECURITY_HEADERS}
_TILE_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}


def _forbidden() -> Response:
    return PlainTextResponse("forbidden", status_code=403, headers=NOT_STORED)


def study_routes(workdir: Path) -> list[Route | Mount]:
    async def case_image(request: Request) -> Response:
        gate = current_gate(workdir)
        name, encoding = request.path_params["name"], gate.prepared.encoding
        case_id = name.removesuffix(encoding.suffix)
        if case_id == name or not gate.may_see(request.query_params.get("session"), case_id):
            return _forbidden()
        if gate.prepared.case(case_id).whole_slide:
            return _forbidden()  # read through its tiles
        data = (gate.prepared.image_folder / name).read_bytes()
        # Never stored, so a revoked session leaves nothing to reopen on a shared computer; the page's
        # prefetch still works, as a document reuses an image it has already loaded (HTML's list of
        # available images), whatever the HTTP cache is told.
        return Response(data, media_type=encoding.media_type, headers=NOT_STORED)

    async def case_tile(request: Request) -> Response:
        gate = current_gate(workdir)
        case_id, level, col, row, suffix = (request.path_params[k] for k in ("case", "level", "col", "row", "suffix"))
        layout = gate.prepared.slide_layout
        if (not gate.may_see(request.query_params.get("session"), case_id)
                or not gate.prepared.case(case_id).whole_slide or layout is None or f".{suffix}" != layout.suffix):
            return _forbidden()
        path = gate.prepared.image_folder / f"{case_id}_files" / str(level) / f"{col}_{row}{layout.suffix}"
        if not path.is_file():
            return PlainTextResponse("no such tile", status_code=404, headers=NOT_STORED)
        return Response(path.read_bytes(), media_type=_TILE_MEDIA_TYPES[layout.suffix], headers=NOT_STORED)

    async def case_answer(request: Request) -> Response:
        body = await request.body()
        try:
            given = json.loads(body) if len(body) <= MAX_ANSWER_BYTES else None
        except ValueError:
            given = None
        # SQLite commits (synchronous=FULL) run in a worker thread, never on the event loop.
        reply = await run_in_threadpool(_answer, workdir, request.query_params.get("session"), given)
        return _forbidden() if reply is None else JSONResponse(reply, headers=NOT_STORED)

    async def organiser_download(request: Request) -> Response:
        params = request.query_params
        found = await run_in_threadpool(_organiser_file, workdir, params.get("session"), request.path_params["name"],
                                        params.get("positive", "synthetic"), params.get("finished") == "1")
        if found is None:
            return _forbidden()
        content, media_type, filename = found
        return Response(content, media_type=media_type,
                        headers={**NOT_STORED, "Content-Disposition": f'attachment; filename="{filename}"'})

    routes: list[Route | Mount] = [
        Route(IMAGE_ROUTE + "/{name}", case_image, methods=["GET"]),
        Route(TILE_ROUTE + "/{case}_files/{level:int}/{col:int}_{row:int}.{suffix}", case_tile, methods=["GET"]),
        Route(ANSWER_ROUTE, case_answer, methods=["POST"]),
        Route(DOWNLOAD_ROUTE + "/{name}", organiser_download, methods=["GET"]),
    ]
    if current_gate(workdir).prepared.slide_layout is not None:
        routes.append(Mount(VIEWER_ROUTE, StaticFiles(directory=openseadragon_folder())))
    return routes


def _answer(workdir: Path, token: str | None, given) -> dict | None:
    """Store a reader's answer; the reply carries a message (or None) and the position after it.
    None: no live reader session (the same bare 403 as every refusal)."""
    gate = current_gate(workdir)
    session = gate.session(token)
    if session is None or session.role != "reader" or not isinstance(given, dict):
        return None
    message = record_answer(gate, session.subject, given)
    return {"message": message, "position": reader_position(gate, session.subject, token)}


def _organiser_file(workdir: Path, token: str | None, name: str, positive: str, finished_only: bool):
    gate = current_gate(workdir)
    session = gate.session(token)
    if session is None or session.role != ORGANISER:
        return None
    return download(name, gate.prepared, gate.answers, positive, finished_only)


class SecurityHeaders:
    """Pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which would buffer every response)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"].startswith(BLOCKED_PREFIXES):
            response = PlainTextResponse("not found", status_code=404)
            return await response(scope, receive, self._secured(send))
        return await self.app(scope, receive, self._secured(send))

    @staticmethod
    def _secured(send):
        async def secured(message):
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _DROPPED]
                message = {**message, "headers": kept + SECURITY_HEADERS}
            await send(message)

        return secured
