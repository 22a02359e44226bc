"""One pipeline, one direction: nothing below the front ends imports Textual."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import gpuwatch
from conftest import ROOT


def _modules():
    for m in pkgutil.walk_packages(gpuwatch.__path__, "gpuwatch."):
        if m.name.startswith("gpuwatch.frontends.tui") or m.name in ("gpuwatch.__main__",):
            continue
        yield m.name


def test_collectors_analysis_and_model_never_import_textual():
    names = list(_modules())
    assert "gpuwatch.collect.nvml" in names and "gpuwatch.model" in names
    code = ("import importlib, sys\n"
            f"names = {names!r}\n"
            "for n in names:\n"
            "    importlib.import_module(n)\n"
            "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
            "print('TEXTUAL' if bad else 'CLEAN')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "CLEAN"


# ---- the import graph of the package, read from the source (lazy imports included) ----------
import ast  # noqa: E402
from pathlib import Path  # noqa: E402

PKG = ROOT / "gpuwatch"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, tuple[Path, ast.AST]]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        out[_module_name(path)] = (path, ast.parse(path.read_text(), str(path)))
    return out


SOURCES = _sources()


def _is_package(name: str) -> bool:
    path = SOURCES.get(name, (None,))[0]
    return path is not None and path.name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str):
    """(imported module, names imported from it, line) for every import in ``name``'s source."""
    tree = SOURCES[name][1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, node)
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in SOURCES:  # `from pkg import module`
                    yield sub, [], node.lineno
                else:
                    yield target, [a.name], node.lineno


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in SOURCES:
        graph[name] = {t for t, _, _ in _imports(name) if t in SOURCES and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_graph_reader_sees_lazy_imports_and_cycles():
    # the checks below are only as good as this reader: it must see an import inside a function
    assert "gpuwatch.frontends.tui.app" in _graph()["gpuwatch.cli.commands"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def test_only_the_runtime_imports_the_simulator():
    allowed = {"gpuwatch.runtime"}
    bad = sorted(f"{name} (line {line})" for name in SOURCES if not name.startswith("gpuwatch.sim")
                 and name not in allowed
                 for target, _, line in _imports(name) if target == "gpuwatch.sim" or target.startswith("gpuwatch.sim."))
    assert bad == []


def _package(name: str) -> str:
    return name if _is_package(name) else name.rpartition(".")[0]


def test_no_private_name_is_imported_from_another_package():
    bad = []
    for name in SOURCES:
        for target, names, line in _imports(name):
            if not target.startswith("gpuwatch") or _package(target) == _package(name):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            module_private = target.rpartition(".")[2].startswith("_") and target in SOURCES
            if private or module_private:
                bad.append(f"{name}:{line} imports {private or target} from {target}")
    assert bad == []


def test_no_import_error_hides_a_broken_module_of_ours():
    """``except ImportError`` around our own modules turns a syntax error into a missing feature."""
    bad = []
    for name, (path, tree) in SOURCES.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try):
                continue
            catches = [h for h in node.handlers if h.type is not None and "ImportError" in ast.unparse(h.type)]
            if not catches:
                continue
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.ImportFrom) and (sub.level or (sub.module or "").startswith("gpuwatch")):
                        bad.append(f"{name}:{sub.lineno}")
    assert bad == []
