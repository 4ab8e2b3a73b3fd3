"""The codebase's own conventions, checked: no import cycles between the project's modules, no folder
past about 15 modules (group it into rooms instead), no module past about 400 lines."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("urcdm", "evaluation", "study_app")
MAX_MODULES_PER_FOLDER = 15
MAX_LINES = 420  # "about 400"


def project_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _module_level_imports(tree: ast.Module):
    """Import statements run when the module is imported: top level, inside try/if, not TYPE_CHECKING."""
    for statement in tree.body:
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            continue
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            yield statement
        elif isinstance(statement, (ast.If, ast.Try)):
            yield from (node for node in ast.walk(statement) if isinstance(node, (ast.Import, ast.ImportFrom)))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    def owner(name: str) -> str | None:  # a name imported from a module -> the project module holding it
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for statement in _module_level_imports(ast.parse(path.read_text())):
            if isinstance(statement, ast.Import):
                targets.update(owner(alias.name) for alias in statement.names)
                continue
            base = statement.module or ""
            if statement.level:
                base = ".".join(package[: len(package) - statement.level + 1] + ([base] if base else []))
            targets.update(owner(f"{base}.{alias.name}") for alias in statement.names)
        graph[name] = targets - {None, name}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return error.args[1]
    return None


def test_the_cycle_check_finds_a_cycle(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import thing\n")
    (tmp_path / "pkg" / "b.py").write_text("try:\n    from . import a\nexcept ImportError:\n    a = None\nthing = 1\n")
    (tmp_path / "pkg" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n")
    (tmp_path / "pkg" / "d.py").write_text("def late():\n    from pkg import c\n    return c\nfrom pkg.c import TYPE_CHECKING\n")
    graph = import_graph(project_modules(tmp_path, ("pkg",)))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.c"] == set() and graph["pkg.d"] == {"pkg.c"}  # TYPE_CHECKING and function-level imports do not count
    assert set(import_cycle(graph)) == {"pkg.a", "pkg.b"}
    del graph["pkg.b"]
    assert import_cycle(graph) is None


def test_no_import_cycles():
    modules = project_modules()
    assert len(modules) > 100
    assert import_cycle(import_graph(modules)) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_folders_stay_rooms(package):
    crowded = {}
    for folder in [ROOT / package, *(p for p in (ROOT / package).rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        if count > MAX_MODULES_PER_FOLDER:
            crowded[str(folder.relative_to(ROOT))] = count
    assert not crowded, f"group these folders into rooms: {crowded}"


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_short(package):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules: {long}"
