"""The package's shape (docs/design.md, "Code map"): every module imports on its own, no two modules import each
other (directly or through others, counting imports inside functions), and each package imports only from the
packages listed before it in the code map."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the code map's order
PACKAGES = ["core", "models", "data", "runs", "training", "evaluation", "workshop", "bench", "cli"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "clo").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every clo module this file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "clo":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "clo"}
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def test_the_folders_are_the_code_map():
    folders = [p.name for p in (ROOT / "clo").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert sorted(folders) == sorted(PACKAGES)
    assert not [p.name for p in (ROOT / "clo").glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    design = (ROOT / "docs" / "design.md").read_text("utf-8")
    for name in MODULES:
        leaf = name.rsplit(".", 1)[-1]
        if name.count(".") == 2:
            assert f"`{leaf}`" in design, f"{name} is missing from docs/design.md's code map"


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for dep in sorted(GRAPH[m]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_packages_import_only_the_packages_before_them():
    wrong = []
    for m, deps in GRAPH.items():
        if m.count(".") < 2:
            continue
        rank = PACKAGES.index(m.split(".")[1])
        for dep in deps:
            if dep.count(".") >= 1 and dep.split(".")[1] in PACKAGES and PACKAGES.index(dep.split(".")[1]) > rank:
                wrong.append(f"{m} imports {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def test_every_module_imports_on_its_own():
    """Each in a fresh interpreter, so that no module leans on another having been imported first."""
    names = [m for m in MODULES if m != "clo.__main__"]
    code = ("import importlib, sys, subprocess\n"
            "bad = []\n"
            "for m in sys.argv[1:]:\n"
            "    r = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True, text=True)\n"
            "    if r.returncode: bad.append(m + ': ' + (r.stderr.strip().splitlines() or ['?'])[-1])\n"
            "print('\\n'.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr
    assert not out.stdout.strip(), out.stdout
