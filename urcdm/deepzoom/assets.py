"""Where the viewer's browser files are: ours (tracked) and OpenSeadragon (installed by ``make setup``).

OpenSeadragon is published on npm, not PyPI. ``make setup`` installs the version pinned in
``web/package-lock.json`` and copies its build here, so the viewer works offline (a hospital
network) and no page ever loads a script from a CDN.
"""

from __future__ import annotations

import os
from pathlib import Path

from urcdm.errors import UserError

STATIC = Path(__file__).resolve().parent / "static"
OPENSEADRAGON_ENV = "URCDM_OPENSEADRAGON"


def openseadragon_folder() -> Path:
    """The folder holding ``openseadragon.min.js`` and its ``images/``; one-line error when absent."""
    folder = Path(os.environ.get(OPENSEADRAGON_ENV) or STATIC / "openseadragon")
    if not (folder / "openseadragon.min.js").is_file():
        raise UserError(f"OpenSeadragon is not installed in {folder}: run `make setup` (it runs npm ci in web/), "
                        f"or point {OPENSEADRAGON_ENV} at a folder with openseadragon.min.js and images/")
    return folder
