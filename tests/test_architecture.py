"""Which way imports go: read from the source with `ast`, so a shortcut fails here.

- No module imports an underscore name from another module (a private name is its
  module's own business).
- No import cycles among the package's modules, counting every import that runs
  (lazy ones inside functions included); imports under `if TYPE_CHECKING:` are for
  annotations only and do not count.
- The layers below the client never import it at run time: `stream`, `conversation`,
  `backend`, `http`, `transport`, the `batch` package and the embedded model (`local`).
  They are handed a client (or a backend) and use what it offers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "extractor"
BELOW_CLIENT = (
    "extractor._stream",
    "extractor._conversation",
    "extractor.backend",
    "extractor._http",
    "extractor._transport",
    "extractor.batch",
    "extractor._local",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.ImportFrom | ast.Import, bool]]:
    """Every import statement, and whether it runs (False: under `if TYPE_CHECKING`)."""

    def walk(node: ast.AST, runs: bool) -> Iterator[tuple[ast.ImportFrom | ast.Import, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.body:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), False)
                for sub in child.orelse:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), runs)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, runs
            yield from walk(child, runs)

    yield from walk(tree, True)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def _edges() -> dict[str, set[str]]:
    """Module → the package modules it imports at run time."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module, path in MODULES.items():
        for node, runs in _imports(ast.parse(path.read_text())):
            if not runs:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(module, node)
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in MODULES:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


#: The modules users import; everything else in the package is private, named `_...`.
PUBLIC_MODULES = {
    "extractor",
    "extractor.__main__",
    "extractor.backend",
    "extractor.batch",
    "extractor.dataframes",
    "extractor.documents",
    "extractor.events",
    "extractor.otel",
    "extractor.ray",
    "extractor.testing",
}


def test_every_module_but_the_public_ones_is_private() -> None:
    public = {m for m in MODULES if not any(p.startswith("_") for p in m.split(".")[1:])}
    public |= {m for m in MODULES if m == "extractor.__main__"}
    assert public == PUBLIC_MODULES


def test_no_module_imports_another_modules_private_names() -> None:
    offences = []
    for module, path in MODULES.items():
        for node, _ in _imports(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            source = _resolve(module, node)
            if not source.startswith("extractor"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.endswith("__"):
                    offences.append(f"{module}: from {source} import {alias.name}")
    assert offences == []


def test_there_is_no_import_cycle() -> None:
    graph = _edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    assert cycles == []


def test_the_layers_below_the_client_never_import_it() -> None:
    graph = _edges()
    offences = [
        f"{module} imports extractor._client"
        for module, targets in graph.items()
        if module.startswith(BELOW_CLIENT) and "extractor._client" in targets
    ]
    assert offences == []
    # nor the package's public face, which imports the client
    assert [m for m, t in graph.items() if m.startswith(BELOW_CLIENT) and "extractor" in t] == []


def test_the_checks_see_what_they_should() -> None:
    """The walk itself: it finds modules and real edges, and skips type-only imports."""
    graph = _edges()
    assert "extractor._conversation" in graph["extractor._client"]
    assert "extractor._http" in graph["extractor._client"]
    assert len(MODULES) > 30
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nimport b\n"
    )
    assert [(type(n).__name__, runs) for n, runs in _imports(tree)][1:] == [
        ("Import", False),
        ("Import", True),
    ]
