"""The distribution a user installs: every library our code imports is one it declares, and a wheel
carries the browser files the commands serve (an offline cluster installs a wheel, not a checkout)."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("urcdm", "evaluation", "study_app")
# Imported only behind a check that the package is there, with a fallback the README names.
OPTIONAL = {"faiss": "the memorisation audit's search falls back to torch"}


def declared_distributions() -> set[str]:
    tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonical(re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the project files importing it, anywhere in the file (lazy imports count: they
    run when the command does)."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for top in {name.split(".")[0] for name in names}:
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_library_is_a_declared_dependency():
    # A library that arrives only through another's requirements, or only with the dev extras, breaks a
    # plain `pip install` (matplotlib did: `urcdm-eval scales` failed at its plot, after all the metrics).
    declared = declared_distributions()
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, files in sorted(third_party_imports().items()):
        if module in OPTIONAL:
            continue
        distributions = {canonical(name) for name in providers.get(module, [])}
        if not distributions & declared:
            undeclared[module] = sorted(files)
    assert not undeclared, f"imported but not in [project] dependencies: {undeclared}"


OPENSEADRAGON = ROOT / "urcdm" / "deepzoom" / "static" / "openseadragon"


@pytest.mark.skipif(not (OPENSEADRAGON / "openseadragon.min.js").is_file(),
                    reason="OpenSeadragon is not installed here (make setup runs npm ci)")
@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build a wheel")
def test_a_wheel_built_after_setup_carries_every_file_the_pages_load(tmp_path):
    # Built from a copy: the tracked files and the viewer make setup installed, as on the build machine.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    shutil.copytree(OPENSEADRAGON, source / OPENSEADRAGON.relative_to(ROOT))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("urcdm-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())

    expected = {path.relative_to(source).as_posix() for folder in ("urcdm/deepzoom/static", "study_app/web/assets")
                for path in (source / folder).rglob("*") if path.is_file() and not path.name.endswith(".map")}
    assert "urcdm/deepzoom/static/openseadragon/openseadragon.min.js" in expected
    assert any(name.startswith("urcdm/deepzoom/static/openseadragon/images/") for name in expected)
    assert expected <= packed, f"left out of the wheel: {sorted(expected - packed)}"
