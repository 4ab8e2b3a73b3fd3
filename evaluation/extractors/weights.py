"""Finding and reading extractor weights, offline first.

Every extractor's weights are looked for in the same order: ``--weights PATH``, the model's
environment variable (``URCDM_<MODEL>_WEIGHTS``), then the caches other tools fill: the torch hub
``checkpoints/`` folder, extra folders a model names (``~/.cache/clip``), and Hugging Face hub
snapshots (``models--ORG--NAME/snapshots/*/``). Absent everywhere, one error line names the file,
the variable and where the file comes from. Only the FID Inception may then be downloaded (its
historical behaviour); foundation models never download anything.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from urcdm.errors import UserError

OFFLINE_VARS = ("URCDM_OFFLINE", "HF_HUB_OFFLINE")


@dataclass(frozen=True)
class WeightsSource:
    """Where one model's weights file is looked for, and what the error says when it is not."""

    label: str                          # "UNI weights": used in every message
    env_var: str                        # URCDM_UNI_WEIGHTS
    origin: str                         # where to get it (URL, or HF repo and its terms)
    file_names: tuple[str, ...] = ()    # distinctive names, looked for in the torch hub cache and extra_dirs
    hf_repos: tuple[str, ...] = ()      # Hugging Face repos whose snapshots may hold the weights ...
    hf_files: tuple[str, ...] = ()      # ... under these (generic) names, looked for in those snapshots only
    extra_dirs: tuple[str, ...] = ()    # more cache folders, "~" expanded (e.g. ~/.cache/clip)

    @property
    def names(self) -> tuple[str, ...]:
        """Every accepted name, the one to fetch first."""
        return (*self.file_names, *self.hf_files)


# -- the FID Inception ---------------------------------------------------------------------------

# The TF-ported FID Inception (2015-12-05) that torch-fidelity and pytorch-fid distribute; the
# hub naming convention puts the first 8 hex digits of the file's SHA-256 in its name.
SHA256_PREFIX = "6726825d"
FILE_NAMES = (f"weights-inception-2015-12-05-{SHA256_PREFIX}.pth", f"pt_inception-2015-12-05-{SHA256_PREFIX}.pth")
URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FILE_NAMES[0]}"
ENV_VAR = "URCDM_INCEPTION_WEIGHTS"
INCEPTION = WeightsSource("Inception weights", ENV_VAR, URL, file_names=FILE_NAMES)


# -- hashing -------------------------------------------------------------------------------------

_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """SHA-256 of a file; remembered per (path, size, mtime) because giant checkpoints take seconds."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def weights_id(name: str, path: Path) -> str:
    """The extractor id recorded with statistics: stats from other weights are never compared."""
    return f"{name}@sha256:{sha256_of(path)[:16]}"


# -- locating ------------------------------------------------------------------------------------

def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, resolved from the same variables it reads (no import)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache_home / "huggingface" / "hub"


def _offline() -> bool:
    return any(os.environ.get(name, "").strip() not in ("", "0") for name in OFFLINE_VARS)


def _in_folder(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _hf_snapshots(repo: str) -> list[Path]:
    # Repo names are case-insensitive on the hub but the cache keeps the spelling used to fetch.
    root = hf_hub_cache_dir()
    wanted = "models--" + repo.replace("/", "--")
    if not root.is_dir():
        return []
    folders = [entry for entry in root.iterdir() if entry.name.lower() == wanted.lower()]
    return sorted((s for folder in folders for s in (folder / "snapshots").glob("*") if s.is_dir()),
                  key=lambda s: s.stat().st_mtime, reverse=True)


def cache_folders(source: WeightsSource) -> list[tuple[Path, tuple[str, ...]]]:
    """(folder, names looked for there), in order. Generic names (pytorch_model.bin) are trusted only
    inside the model's own Hugging Face snapshots, never in a shared folder."""
    folders = []
    if source.file_names:
        folders += [(folder, source.file_names)
                    for folder in (hub_checkpoint_dir(), *(Path(d).expanduser() for d in source.extra_dirs))]
    for repo in source.hf_repos:
        folders += [(snapshot, source.names) for snapshot in _hf_snapshots(repo)]
    return folders


def _given(path: Path, source: WeightsSource, origin: str) -> Path:
    """A path from --weights or the environment: a file, or a folder (an HF snapshot) holding one."""
    if path.is_dir():
        found = _in_folder(path, source.names)
        if found is None:
            raise UserError(f"{path}: no {' or '.join(source.names)} in this folder ({origin})")
        return found
    if not path.is_file():
        raise UserError(f"{path}: {source.label} file not found ({origin})")
    return path


def locate(source: WeightsSource, explicit: str | None = None) -> tuple[Path, str] | None:
    """(path, where it was found) from --weights, the environment or a cache; None if nowhere."""
    if explicit:
        return _given(Path(explicit).expanduser(), source, "--weights"), "--weights"
    if os.environ.get(source.env_var):
        return _given(Path(os.environ[source.env_var]).expanduser(), source, f"${source.env_var}"), f"${source.env_var}"
    for folder, names in cache_folders(source):
        found = _in_folder(folder, names)
        if found is not None:
            return found, "cache"
    return None


def find_weights(source: WeightsSource, explicit: str | None = None) -> Path:
    """The weights file, or one UserError line naming the file, the variable and the origin."""
    found = locate(source, explicit)
    if found is not None:
        return found[0]
    places = [str(hub_checkpoint_dir()), *source.extra_dirs] if source.file_names else []
    if source.hf_repos:
        places.append(f"the Hugging Face cache {hf_hub_cache_dir()} ({', '.join(source.hf_repos)})")
    raise UserError(f"{source.label} not found: {source.names[0]} is not given by --weights or ${source.env_var} "
                    f"and not in {' or '.join(places)} (nothing is downloaded); get it from {source.origin}")


# -- reading -------------------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_torchscript(path: Path) -> bool:
    # TorchScript archives are zip files like torch.save's, with their code and constants.pkl added.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _load_any(path: Path):
    """safetensors, a torch pickle (weights only, never code), or a TorchScript archive (OpenAI CLIP)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix == ".safetensors":
        return load_file(str(path))
    if _is_torchscript(path):
        return torch.jit.load(str(path), map_location="cpu").state_dict()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        try:  # a safetensors file under another name
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            raise exc from None


def read_state_dict(path: Path, source: WeightsSource) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped from the usual containers, 'module.' prefixes removed."""
    try:
        state = _load_any(Path(path))
    except Exception as exc:  # truncated download, HTML error page, another format: not weights
        raise UserError(f"{path}: not a readable weights file (no tensors-only torch checkpoint, TorchScript archive "
                        f"or safetensors file: {_first_line(exc).split('. ')[0]}); expected {source.label}, "
                        f"{source.names[0]} from {source.origin}") from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: holds no tensor state dict; expected {source.label}, "
                        f"{source.names[0]} from {source.origin}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def check_matches(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, source: WeightsSource) -> None:
    """Weights of another architecture give one line, not a size-mismatch traceback.

    ``module`` may live on the meta device: only names and shapes are compared.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        if wrong:
            example = f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}"
        else:
            example = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise UserError(f"{path}: not {source.label} (another architecture: {len(missing)} missing, {len(unexpected)} "
                        f"unexpected, {len(wrong)} wrong-shape tensors; e.g. {example}); "
                        f"expected {source.names[0]} from {source.origin}")


# -- the FID Inception: checked by hash, downloaded when online ----------------------------------

def _checked(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: Inception weights file not found ({origin})")
    actual = sha256_of(path)
    if not actual.startswith(SHA256_PREFIX):
        raise UserError(f"{path}: SHA-256 {actual[:8]}... is not the FID Inception weights (expected {SHA256_PREFIX}...); "
                        f"get {FILE_NAMES[0]} from {URL}")
    return path


def find_inception_weights(explicit: str | None = None) -> Path:
    """The verified weights file, downloading it into the hub cache only if nothing is found."""
    found = locate(INCEPTION, explicit)
    if found is not None:
        path, origin = found
        return _checked(path, "torch hub cache" if origin == "cache" else origin)
    target = hub_checkpoint_dir() / FILE_NAMES[0]
    why = "offline mode is set" if _offline() else None
    if why is None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL, str(target), hash_prefix=SHA256_PREFIX, progress=True)
            return _checked(target, "download")
        except Exception as exc:  # no network, proxy, partial file: all mean "not available here"
            why = f"download failed: {_first_line(exc)}"
    raise UserError(f"Inception-v3 FID weights not found: {FILE_NAMES[0]} (SHA-256 {SHA256_PREFIX}...) is not given by "
                    f"--weights or ${ENV_VAR} and not in {hub_checkpoint_dir()} ({why}); get it from {URL}")
