"""``urcdm view``: a local web server that shows slides side by side in OpenSeadragon.

Routes: ``/`` the page, ``/slides.json`` what it shows, ``/slide/<i>.dzi`` and
``/slide/<i>_files/<level>/<col>_<row>.jpeg`` each slide's Deep Zoom image (OpenSeadragon's
default URL layout), ``/static/`` our page's files and ``/osd/`` OpenSeadragon. Tiles are made on
request by worker threads (Starlette runs plain functions in its thread pool), so memory is one
bounded tile cache per slide, whatever the slide's size.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from urcdm.clikit import url_host
from urcdm.deepzoom.assets import STATIC, openseadragon_folder
from urcdm.deepzoom.tiles import DeepZoomSlide
from urcdm.errors import SlideError, UserError
from urcdm.slides import open_slide

# Slides are patient data. The page and OpenSeadragon need nothing from another origin and no inline
# script; no other site may frame the viewer, read its tiles, or learn the page's address.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data: blob:",
    "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(address: str) -> list[str]:
    """The Host headers the server answers. Listening on this computer only, a page from another site
    could still reach it through a name that resolves to 127.0.0.1 (DNS rebinding) and read the
    slides: only the loopback names are served. Listening on the network, any name may be the server's."""
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)}
        loopback = all(ipaddress.ip_address(ip).is_loopback for ip in resolved)
    except (OSError, UnicodeError, ValueError):
        loopback = False
    return list(dict.fromkeys([*LOOPBACK_NAMES, url_host(address).lower()])) if loopback else ["*"]


class _SecurityHeaders:
    """Pure ASGI middleware (not BaseHTTPMiddleware, which buffers each response through a task)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                extra = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def open_slides(paths: Sequence[str | Path]) -> list[DeepZoomSlide]:
    """Every slide opened before the server starts: a bad one is an ``error:`` line, not a broken page."""
    return [DeepZoomSlide(open_slide(path)) for path in paths]


def viewer_app(slides: Sequence[DeepZoomSlide], hosts: Sequence[str] = LOOPBACK_NAMES) -> Starlette:
    osd = openseadragon_folder()

    def slide_at(request: Request) -> DeepZoomSlide | None:
        index = request.path_params["index"]
        return slides[index] if index < len(slides) else None

    def page(request: Request) -> Response:
        return FileResponse(STATIC / "view.html", headers={"Cache-Control": "no-store"})

    def listing(request: Request) -> Response:
        return JSONResponse([dict(slide.describe(), dzi=f"slide/{i}.dzi") for i, slide in enumerate(slides)])

    def dzi(request: Request) -> Response:
        slide = slide_at(request)
        if slide is None:
            return PlainTextResponse("no such slide", status_code=404)
        return Response(slide.dzi(), media_type="application/xml")

    def tile(request: Request) -> Response:
        slide = slide_at(request)
        if slide is None:
            return PlainTextResponse("no such slide", status_code=404)
        level, col, row = (request.path_params[k] for k in ("level", "col", "row"))
        try:
            data = slide.tile_jpeg(level, col, row)
        except SlideError as exc:  # damaged data in the file: one line in the server's output, no traceback
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return PlainTextResponse(str(exc), status_code=500)
        except UserError as exc:  # an address outside the pyramid
            return PlainTextResponse(str(exc), status_code=404)
        # The files do not change while the viewer runs: let the browser keep what it has seen.
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    middleware = [Middleware(_SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))]
    return Starlette(middleware=middleware, routes=[
        Route("/", page),
        Route("/slides.json", listing),
        Route("/slide/{index:int}.dzi", dzi),
        Route("/slide/{index:int}_files/{level:int}/{col:int}_{row:int}.jpeg", tile),
        Mount("/static", StaticFiles(directory=STATIC)),
        Mount("/osd", StaticFiles(directory=osd)),
    ])

