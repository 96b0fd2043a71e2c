"""The engine's modules import one another without cycles, counting imports made only for type
checking (``if TYPE_CHECKING``) and imports inside functions: a cycle between modules is a knot
that makes the layers (checked by ``lint-imports``, see pyproject.toml) hard to keep."""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_engine_has_no_import_cycles() -> None:
    graph = grimp.build_graph("engine", exclude_type_checking_imports=False)
    assert "engine.runtime.executor.loop" in graph.modules  # (the worktree's engine was read)
    assert _cycles(graph) == []
