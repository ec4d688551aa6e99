"""The folders say which process runs the code, and the imports keep to it.

From the source (every import: top level, in functions, under ``TYPE_CHECKING``): the engine side
imports nothing of the client side or the integrations, the client side nothing of the engine
side, and the wire and the process layer neither.  And at run time: a spawn engine, a fresh
interpreter, loads no client module.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Dict, Set

import pytest

from localpar import Client, interactive

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "localpar"


def _imports() -> Dict[str, Set[str]]:
    """Each module's dotted name -> the dotted names of the localpar modules it imports."""
    graph: Dict[str, Set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        module = ".".join(parts)
        targets: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts if is_package else parts[:-1]
                    base = base[: len(base) - node.level + 1]
                    head = ".".join(base + ([node.module] if node.module else []))
                else:
                    head = node.module or ""
                targets.add(head)
                targets.update(f"{head}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
        graph[module] = {t for t in targets if t.startswith("localpar")}
    return graph


def _offenders(side: str, forbidden: tuple) -> Dict[str, Set[str]]:
    found = {}
    for module, targets in _imports().items():
        if module.startswith(side):
            bad = {t for t in targets if t.startswith(forbidden)}
            if bad:
                found[module] = bad
    return found


def test_the_engine_side_imports_nothing_of_the_client_side():
    assert _offenders("localpar.engine", ("localpar.client", "localpar.integrations")) == {}


def test_the_client_side_imports_nothing_of_the_engine_side():
    assert _offenders("localpar.client", ("localpar.engine",)) == {}


@pytest.mark.parametrize("layer", ["localpar.wire", "localpar.processes"])
def test_the_wire_and_the_process_layer_import_neither_side(layer):
    assert _offenders(layer, ("localpar.client", "localpar.engine", "localpar.integrations")) == {}


def test_the_graph_sees_the_imports_it_checks():
    """The checks above are only as good as the graph: it must see relative, function-level
    and TYPE_CHECKING imports."""
    graph = _imports()
    assert "localpar.client.ledger" in graph["localpar.client.collector"]  # relative, top level
    assert "localpar.client.streaming" in graph["localpar.client.asyncresult"]  # inside a function
    assert "localpar.client.handles" in graph["localpar.client.ledger"]  # under TYPE_CHECKING


@interactive  # sent by value: unpickling it must not import this test module (which imports the client)
def loaded_client_modules():
    import sys

    return sorted(m for m in sys.modules if m.startswith(("localpar.client", "localpar.integrations")))


def test_a_spawn_engine_loads_no_client_module():
    with Client(1, start_method="spawn") as c:
        assert c[0].apply_sync(loaded_client_modules) == []
