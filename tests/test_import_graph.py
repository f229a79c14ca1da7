"""The floor plan, held by the imports: no cycles; the edges (handlers/) are imported only by the application
factory; storage never reaches up into the services beyond the pure modules it is allowed today."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.helpers import ROOT

_PACKAGES = ("bot", "handlers", "storage", "wecom_sim")
# What storage/ may import from bot/: models and pure rules. The renovation moves these into a domain package
# of their own; this list may shrink, never grow.
_STORAGE_MAY_IMPORT = {
    "bot.awareness.models", "bot.awareness.settings", "bot.cards", "bot.config", "bot.directory", "bot.lifecycle",
    "bot.models", "bot.reports.models", "bot.reports.synthetic", "bot.roster",
}


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


def test_storage_reaches_into_the_services_only_for_the_pure_modules_it_may_use():
    graph = _graph()
    reached = {t for name, targets in graph.items() if name.startswith("storage") for t in targets
               if t.split(".")[0] in ("bot", "handlers", "wecom_sim")}
    assert reached <= _STORAGE_MAY_IMPORT, reached - _STORAGE_MAY_IMPORT


def test_the_simulator_imports_nothing_of_the_service():
    graph = _graph()
    assert not {t for name, targets in graph.items() if name.startswith("wecom_sim") for t in targets
                if not t.startswith("wecom_sim")}
