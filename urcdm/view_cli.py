"""``urcdm view``: slides side by side in the browser, deep zoom with synchronised pan and zoom."""

from __future__ import annotations

import argparse
import json
import sys
import webbrowser

from urcdm.clikit import add_output_options, bound_socket, bounded_int, server_urls


def add_commands(commands) -> None:
    view = commands.add_parser(
        "view", help="deep-zoom viewer: slides side by side in the browser, synchronised pan and zoom",
        description="Serve the slides to a local browser page (OpenSeadragon). Tiles come from the pyramid "
                    "level that matches the zoom, so a 41344 x 41344 slide opens at once. On a remote "
                    "server, forward the port: ssh -L 8765:localhost:8765 HOST.")
    view.add_argument("slides", nargs="+", metavar="SLIDE", help="slides to show: our pyramids, SVS, TIFF, PNG ...")
    view.add_argument("--port", type=bounded_int(0, 65535), default=8765, help="port to listen on (default 8765; 0 = any free port)")
    view.add_argument("--address", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this computer only)")
    view.add_argument("--open", action="store_true", help="open the page in the default browser")
    add_output_options(view)
    view.set_defaults(handler=cmd_view)


def cmd_view(args: argparse.Namespace) -> int:
    # Imported here: the web stack is only needed by this command.
    import uvicorn

    from urcdm.deepzoom.server import allowed_hosts, open_slides, viewer_app

    slides = open_slides(args.slides)
    app = viewer_app(slides, allowed_hosts(args.address))
    # Listening before the address is printed: a script that reads the URL (--json) and fetches it at
    # once is answered, not refused, and --port 0's free port cannot be taken in between.
    listening = bound_socket(args.port, args.address)
    listening.listen(2048)  # uvicorn's default backlog
    url, network_url = server_urls(args.address, listening.getsockname()[1])
    if args.json:
        found = {"url": url, **({"network_url": network_url} if network_url else {})}
        print(json.dumps({**found, "slides": [slide.describe() for slide in slides]}), flush=True)
    else:
        names = ", ".join(slide.slide.path.name for slide in slides)
        print(f"urcdm view: {url}  ({names}); Ctrl-C stops", file=sys.stderr, flush=True)
        if network_url:
            print(f"urcdm view: from other computers {network_url}", file=sys.stderr, flush=True)
    if args.open and not webbrowser.open(url):
        print(f"note: no browser found to open; open {url} yourself", file=sys.stderr)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
    return 0
