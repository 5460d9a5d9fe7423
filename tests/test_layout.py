"""The layers stay one-way: the project's import graph (built with ``ast``) has no cycle,
``actors/`` imports neither ``jobs/``, ``serve/`` nor Ray, and ``jobs/`` reaches ``serve/`` only
from its CLI package (the top floor). Every import counts, also those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("actors", "jobs", "serve")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name ``path`` imports (absolute, also relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (``from pkg import sub`` counts as
    importing the submodule when ``sub`` is one)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {n for n in imported_names(path, name) if n in modules and n != name}
        # "from jobs.golden import job" names both jobs.golden and jobs.golden.job: keep the
        # deepest, so importing a submodule is not read as importing its package's __init__
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), plus self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle_and_an_import_in_a_function(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from jobs.golden import job\n    from . import x\n")
    assert {"os", "jobs.golden", "jobs.golden.job", "pkg.x"} <= imported_names(src, "pkg.m")


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_actors_import_neither_jobs_serve_nor_ray():
    modules = project_modules()
    for name, path in modules.items():
        if not name.startswith("actors"):
            continue
        bad = sorted(n for n in imported_names(path, name)
                     if n.split(".")[0] in ("jobs", "serve", "ray"))
        assert not bad, f"{name} imports {bad}: actors/ are plain units, below jobs/ and serve/"


def test_jobs_reach_serve_and_the_cli_only_from_the_cli():
    for name, targets in import_graph().items():
        if not name.startswith("jobs") or name.startswith("jobs.cli"):
            continue
        up = sorted(t for t in targets if t.startswith("serve") or
                    (t.startswith("jobs.cli") and name != "jobs.golden.__main__"))
        assert not up, f"{name} imports {up}: only jobs/cli/ (the top floor) may"


def test_serve_never_imports_the_cli():
    for name, targets in import_graph().items():
        if name.startswith("serve"):
            assert not [t for t in targets if t.startswith("jobs.cli")], name
