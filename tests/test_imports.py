"""Every module of the package imports on its own, and no two modules import each other, not even
through an import tucked inside a function (such an import only hides a circle until some entry
point happens to import the modules in the other order)."""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import avggt_bench

PACKAGE = Path(avggt_bench.__file__).resolve().parent

# Imports each named module with every module of the package dropped from sys.modules first, so
# that each import starts from that module, as a fresh interpreter would (third-party modules stay
# loaded: one process for all, seconds instead of minutes). Prints "name: error" per failure.
ISOLATED_IMPORTS = textwrap.dedent(
    """
    import importlib, sys, traceback
    prefix, names = sys.argv[1], sys.argv[2:]
    for name in names:
        for loaded in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except Exception as exc:
            line = traceback.format_exception_only(type(exc), exc)[-1].strip()
            print(f"{name}: {line}")
    """
)


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module under `root` (a package `__init__` is the package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Which of `modules` each one imports, at module level or inside a function."""
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def isolated_import_failures(names: list[str], prefix: str, path: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", ISOLATED_IMPORTS, prefix, *names],
        cwd=path,
        env={**os.environ, "PYTHONPATH": str(path), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def _circular_package(tmp_path: Path) -> Path:
    """`circ.a` imports `circ.b` at module level, `circ.b` imports a name of `circ.a` lazily."""
    pkg = tmp_path / "circ"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from circ.b import B\n\nA = 1\n")
    (pkg / "b.py").write_text(
        "from circ.a import A\n\nB = 2\n\n\ndef lazy():\n    from circ.a import A\n    return A\n"
    )
    (pkg / "c.py").write_text("B = 3\n\n\ndef lazy():\n    from circ.d import D\n    return D\n")
    (pkg / "d.py").write_text("from circ.c import B\n\nD = 4\n")
    return tmp_path


def test_the_checks_see_a_circle(tmp_path):
    root = _circular_package(tmp_path)
    modules = module_names(root / "circ", "circ")
    assert cycles(import_edges(modules)) == [["circ.a", "circ.b"], ["circ.c", "circ.d"]]
    failures = isolated_import_failures(["circ.a", "circ.b", "circ.c", "circ.d"], "circ", root)
    assert [f.split(":")[0] for f in failures] == ["circ.a", "circ.b"]
    assert "ImportError" in failures[0]


def test_no_import_circles_even_through_lazy_imports():
    modules = module_names(PACKAGE, "avggt_bench")
    assert len(modules) > 50
    assert cycles(import_edges(modules)) == []


@pytest.mark.slow  # 16 s on 2 cores: every module re-imported; the circle check above stays fast
def test_every_module_imports_on_its_own():
    names = sorted(n for n in module_names(PACKAGE, "avggt_bench") if not n.endswith("__main__"))
    assert isolated_import_failures(names, "avggt_bench", PACKAGE.parent) == []
