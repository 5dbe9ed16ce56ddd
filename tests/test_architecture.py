"""How trioapi's modules depend on each other: no import cycle, no module reading another's private state."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trioapi"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> Iterator[str]:
    """The trioapi modules an import names (``from trioapi import status`` names ``trioapi.status``)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name in known)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    for alias in node.names:
        name = f"{base}.{alias.name}"
        if name in known:
            yield name
        elif base in known:
            yield base


def import_graph() -> dict[str, set[str]]:
    """Every import between trioapi's modules, ``TYPE_CHECKING`` and function-level imports included."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[name].update(target for target in _imported(name, path, node, known) if target != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_trioapis_modules() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


#: ``websocket._x``, ``ws._x``, ``transport._x``: another object's private attribute.
PRIVATE_PEEK = re.compile(r"\b(websocket|ws|transport)\._[a-z]")


def test_no_module_reads_a_websockets_or_transports_private_attributes() -> None:
    owners = {PACKAGE / "websockets.py", *(PACKAGE / "transports").glob("*.py")}
    peeks = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in owners
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_PEEK.search(line)
    ]
    assert peeks == []


def test_the_peek_check_sees_a_peek() -> None:
    assert PRIVATE_PEEK.search("send = websocket._send")
    assert not PRIVATE_PEEK.search("await websocket.send_text(x)")


def test_the_package_does_not_import_asyncio_starlette_or_fastapi() -> None:
    # anyio only where coredis, which runs on it, lets its exceptions out (the Redis backend).
    allowed = {("anyio", PACKAGE / "broadcast" / "redis.py")}
    forbidden = {"asyncio", "starlette", "fastapi", "anyio"}
    found = [
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
        if name.split(".")[0] in forbidden and (name.split(".")[0], path) not in allowed
    ]
    assert found == []
