"""The package's shape, checked on the code itself: one installed namespace, and an import graph
where the core never reaches into scanner/server/training and those three never into each other
(only the CLI, the composition root, joins them)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBSYSTEMS = ("ldmscan.scanner", "ldmscan.server", "ldmscan.training")
GENERIC_NAMES = {"scanner", "server", "training", "migrations"}


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (the namespace mapping resolved
    by the import system, as a user's install sees it)."""
    import importlib

    found: dict[str, Path] = {}
    for package in ("ldmscan", *SUBSYSTEMS, "ldmscan.migrations"):
        root = Path(importlib.import_module(package).__file__).parent
        for path in root.rglob("*.py"):
            relative = path.relative_to(root).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            if "versions" in parts or any(p.startswith(".") for p in parts):
                continue
            name = ".".join([package, *parts])
            if package == "ldmscan" and name.startswith((*SUBSYSTEMS, "ldmscan.migrations")):
                continue
            found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of every module this one imports (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _group(module: str) -> str:
    if module == "ldmscan.__main__":  # `python -m ldmscan`: the CLI's entry point
        return "ldmscan.cli"
    for subsystem in (*SUBSYSTEMS, "ldmscan.cli", "ldmscan.migrations"):
        if module == subsystem or module.startswith(subsystem + "."):
            return subsystem
    return "core" if module == "ldmscan" or module.startswith("ldmscan.") else "outside"


def _edges() -> set[tuple[str, str]]:
    modules = _modules()
    edges = set()
    for name, path in modules.items():
        for imported in _imports(name, path):
            if _group(imported) != "outside":
                edges.add((name, imported))
    return edges


def test_the_graph_sees_every_subsystem():
    groups = {_group(src) for src, _ in _edges()}
    assert {"core", "ldmscan.cli", *SUBSYSTEMS} <= groups


def test_core_never_imports_the_subsystems_or_the_cli():
    bad = sorted(
        (src, dst)
        for src, dst in _edges()
        if _group(src) == "core" and _group(dst) in {*SUBSYSTEMS, "ldmscan.cli"}
    )
    assert bad == []


def test_subsystems_import_only_the_core():
    bad = sorted(
        (src, dst)
        for src, dst in _edges()
        if _group(src) in SUBSYSTEMS and _group(dst) not in {"core", _group(src)}
    )
    assert bad == []


def test_nothing_imports_a_bare_generic_name():
    """`scanner`, `server`, `training`, `migrations` exist only inside the ldmscan namespace."""
    offenders = []
    for folder in ("ldmscan", "scanner", "server", "training", "migrations", "tests", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                offenders += [
                    f"{path.relative_to(REPO)}: {n}"
                    for n in names
                    if n.split(".")[0] in GENERIC_NAMES
                ]
    assert offenders == []


def test_the_subsystems_live_inside_the_namespace():
    import importlib

    for name in (*SUBSYSTEMS, "ldmscan.migrations"):
        module = importlib.import_module(name)
        assert Path(module.__file__).parent.name == name.rpartition(".")[2]


@pytest.mark.slow
def test_a_wheel_installs_only_ldmscan(tmp_path):
    """`pip install .` puts one top-level package into site-packages, with its migrations."""
    # a copy of the tree: setuptools builds in place and never clears a stale build/ folder
    source = tmp_path / "src"
    skip = shutil.ignore_patterns(
        ".git",
        ".venv",
        "work",
        "runs",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        "node_modules",
    )
    shutil.copytree(REPO, source, ignore=skip)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(wheels), str(source)], check=True, capture_output=True)
    (wheel,) = wheels.glob("ldmscan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ldmscan"}
    for expected in (
        "ldmscan/scanner/watch.py",
        "ldmscan/server/app.py",
        "ldmscan/training/fit.py",
        "ldmscan/migrations/env.py",
        "ldmscan/migrations/script.py.mako",
        "ldmscan/migrations/versions/0001_initial_schema.py",
        "ldmscan/models/default.safetensors",
        "ldmscan/cli/scan.py",
    ):
        assert expected in names
