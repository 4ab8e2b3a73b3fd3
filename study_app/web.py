"""What the study's web server adds to Streamlit's: the case-image and tile routes, security headers.

Case images are not static files. ``/case-image/<case id><suffix>?session=<token>`` answers only a
live reader session that is assigned that case, and every refusal is the same bare 403, so the
route tells a stranger nothing (not even whether a case exists). Whole-slide cases are read tile by
tile, ``/case-tiles/<case id>_files/<level>/<col>_<row>.jpg?session=<token>``, under the same rule;
``/viewer-lib/`` serves OpenSeadragon itself (installed by ``make setup``, never from a CDN).

Answers carry no ETag or Last-Modified: every served image has one byte length, and every tile the
byte length of its level (``study_app.rendering.pad``), and nothing else in the headers may differ
by class.

Every response gets a content security policy, ``frame-ancestors 'none'`` with X-Frame-Options (no
page of the study can be framed by another site), no referrer (the URL holds the session token) and
no cross-origin sharing. Streamlit's metrics and static-file routes answer 404.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from study_app.gate import current_gate
from urcdm.deepzoom.assets import openseadragon_folder

IMAGE_ROUTE, TILE_ROUTE, VIEWER_ROUTE = "/case-image", "/case-tiles", "/viewer-lib"
BLOCKED_PREFIXES = ("/_stcore/metrics", "/app/static")
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
_MEDIA_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


def _forbidden() -> Response:
    return PlainTextResponse("forbidden", status_code=403, headers={"Cache-Control": "no-store"})


def study_routes(workdir: Path) -> list[Route | Mount]:
    async def case_image(request: Request) -> Response:
        gate = current_gate(workdir)
        name, suffix = request.path_params["name"], gate.prepared.study.display.suffix
        case_id = name.removesuffix(suffix)
        if case_id == name or not gate.may_see(request.query_params.get("session"), case_id):
            return _forbidden()
        if gate.prepared.case(case_id).whole_slide:
            return _forbidden()  # read through its tiles
        data = (gate.prepared.image_folder / name).read_bytes()
        # Never stored, so a revoked session leaves nothing to reopen on a shared computer; the page's
        # prefetch still works, as a document reuses an image it has already loaded (HTML's list of
        # available images), whatever the HTTP cache is told.
        return Response(data, media_type=_MEDIA_TYPES[suffix], headers={"Cache-Control": "no-store"})

    async def case_tile(request: Request) -> Response:
        gate = current_gate(workdir)
        case_id, level, col, row = (request.path_params[k] for k in ("case", "level", "col", "row"))
        if not gate.may_see(request.query_params.get("session"), case_id) or not gate.prepared.case(case_id).whole_slide:
            return _forbidden()
        path = gate.prepared.image_folder / f"{case_id}_files" / str(level) / f"{col}_{row}.jpg"
        if not path.is_file():
            return PlainTextResponse("no such tile", status_code=404, headers={"Cache-Control": "no-store"})
        return Response(path.read_bytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    routes: list[Route | Mount] = [
        Route(IMAGE_ROUTE + "/{name}", case_image, methods=["GET"]),
        Route(TILE_ROUTE + "/{case}_files/{level:int}/{col:int}_{row:int}.jpg", case_tile, methods=["GET"]),
    ]
    if current_gate(workdir).prepared.slide_layout is not None:
        routes.append(Mount(VIEWER_ROUTE, StaticFiles(directory=openseadragon_folder())))
    return routes


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
