"""The floor plan, held by the imports: edges (handlers/) → services (bot/) → storage (storage/) → domain
(domain/). No cycles; the edges are imported only by the application factory; storage imports nothing of the
project but the domain; the domain imports nothing but itself and the standard library."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

from tests.helpers import ROOT

_PACKAGES = ("bot", "domain", "handlers", "storage", "wecom_sim")


def _modules() -> dict[str, Path]:
    found = {}
    for package in _PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _graph() -> dict[str, set[str]]:
    """Module → the project modules it imports at run time (absolute and relative, at any depth in the file;
    not under `if TYPE_CHECKING:`, which is for the type checker)."""
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(node) for block in ast.walk(tree)
                       if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
                       for node in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
                base = ".".join(p for p in (anchor, node.module or "") if p)
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                # `from . import x` names submodules; `from .m import y` depends on m (and y, if a module).
                targets = submodules if node.module is None else [base, *submodules]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_edges_are_imported_only_by_the_application_factory():
    importers = {name for name, targets in _graph().items()
                 if not name.startswith("handlers") and any(t.startswith("handlers") for t in targets)}
    assert importers == {"bot.app"}


def test_storage_depends_only_on_the_domain():
    graph = _graph()
    reached = {t for name, targets in graph.items() if name.startswith("storage") for t in targets
               if not t.startswith("storage")}
    assert reached
    assert {t.split(".")[0] for t in reached} == {"domain"}, reached


def _third_party(path: Path) -> set[str]:
    """Top-level modules a file imports that are neither the standard library nor the project."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        found.update(n.split(".")[0] for n in names)
    return {n for n in found if n not in sys.stdlib_module_names and n not in ("__future__", *_PACKAGES)}


def test_the_domain_is_pure():
    graph = _graph()
    domain = {name: path for name, path in _modules().items() if name.startswith("domain")}
    assert len(domain) > 5
    for name in domain:
        assert {t for t in graph.get(name, ()) if not t.startswith("domain")} == set(), name
    assert {name: _third_party(path) for name, path in domain.items() if _third_party(path)} == {}
    # and I/O: the domain opens no files and sockets
    assert [name for name, path in domain.items()
            if any(word in path.read_text(encoding="utf-8") for word in ("open(", "socket", "asyncio"))] == []


def test_the_simulator_imports_nothing_of_the_service():
    graph = _graph()
    assert not {t for name, targets in graph.items() if name.startswith("wecom_sim") for t in targets
                if not t.startswith("wecom_sim")}
