"""Finding the FID Inception weights: --weights, $URCDM_INCEPTION_WEIGHTS, the torch hub cache,
then a download when online. Offline and absent, one error line says what to fetch and where."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from urcdm.errors import UserError

# The TF-ported FID Inception (2015-12-05) that torch-fidelity and pytorch-fid distribute; the
# hub naming convention puts the first 8 hex digits of the file's SHA-256 in its name.
SHA256_PREFIX = "6726825d"
FILE_NAMES = (f"weights-inception-2015-12-05-{SHA256_PREFIX}.pth", f"pt_inception-2015-12-05-{SHA256_PREFIX}.pth")
URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FILE_NAMES[0]}"
ENV_VAR = "URCDM_INCEPTION_WEIGHTS"
OFFLINE_VARS = ("URCDM_OFFLINE", "HF_HUB_OFFLINE")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: Inception weights file not found ({origin})")
    actual = sha256_of(path)
    if not actual.startswith(SHA256_PREFIX):
        raise UserError(f"{path}: SHA-256 {actual[:8]}... is not the FID Inception weights (expected {SHA256_PREFIX}...); "
                        f"get {FILE_NAMES[0]} from {URL}")
    return path


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _offline() -> bool:
    return any(os.environ.get(name, "").strip() not in ("", "0") for name in OFFLINE_VARS)


def find_inception_weights(explicit: str | None = None) -> Path:
    """The verified weights file, downloading it into the hub cache only if nothing is found."""
    if explicit:
        return _checked(Path(explicit), "--weights")
    if os.environ.get(ENV_VAR):
        return _checked(Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
    for name in FILE_NAMES:
        cached = hub_checkpoint_dir() / name
        if cached.is_file():
            return _checked(cached, "torch hub cache")
    target = hub_checkpoint_dir() / FILE_NAMES[0]
    why = "offline mode is set" if _offline() else None
    if why is None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL, str(target), hash_prefix=SHA256_PREFIX, progress=True)
            return _checked(target, "download")
        except Exception as exc:  # no network, proxy, partial file: all mean "not available here"
            why = f"download failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    raise UserError(f"Inception-v3 FID weights not found: {FILE_NAMES[0]} (SHA-256 {SHA256_PREFIX}...) is not given by "
                    f"--weights or ${ENV_VAR} and not in {hub_checkpoint_dir()} ({why}); get it from {URL}")
