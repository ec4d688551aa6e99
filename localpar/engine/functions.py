"""How a function sent by value is rebuilt on the engine: bound to the engine's namespace,
with its real file name back for tracebacks."""

from __future__ import annotations

import types
from typing import Any, Dict, Optional, Tuple


def bind_to_namespace(f: Any, namespace: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
    """A ``__main__`` function rebuilt with the engine's namespace as its globals, and the
    globals cloudpickle captured with it on the client (dunder names left out).

    The caller sets the captured values into the namespace before every call
    (see the rule in ``engine``); any other name resolves in the namespace.
    Other functions come back as they are, with nothing captured.
    """
    if not isinstance(f, types.FunctionType) or f.__module__ != "__main__" or f.__globals__ is namespace:
        return f, {}
    captured = {k: v for k, v in f.__globals__.items() if not (k.startswith("__") and k.endswith("__"))}
    bound = types.FunctionType(f.__code__, namespace, f.__name__, f.__defaults__, f.__closure__)
    bound.__kwdefaults__ = f.__kwdefaults__
    bound.__dict__.update(f.__dict__)
    bound.__qualname__ = f.__qualname__
    captured = {k: (bound if v is f else v) for k, v in captured.items()}  # it names itself: the bound one
    return bound, captured


def fresh_copy(template: Any, captured: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
    """A copy of a cached function for one call: new closure cells holding the template's
    values, a copy of its attributes, and, among the captured globals, the copy where the
    function names itself.  So a task never sees what an earlier task did to its copy
    (``nonlocal`` state, ``f.calls += 1``), though the pickle was reused; the template itself
    is never called.  Other callables come back as they are."""
    if not isinstance(template, types.FunctionType) or not (template.__closure__ or template.__dict__ or captured):
        return template, captured
    cells = None
    if template.__closure__ is not None:
        cells = tuple(_copy_cell(cell) for cell in template.__closure__)
    f = types.FunctionType(template.__code__, template.__globals__, template.__name__, template.__defaults__, cells)
    f.__kwdefaults__ = template.__kwdefaults__
    f.__dict__.update(template.__dict__)
    f.__qualname__ = template.__qualname__
    if any(value is template for value in captured.values()):
        captured = {k: (f if v is template else v) for k, v in captured.items()}
    return f, captured


def _copy_cell(cell: Any) -> Any:
    try:
        return types.CellType(cell.cell_contents)
    except ValueError:  # an empty cell
        return types.CellType()


def restore_filename(f: Any, filename: Optional[str]) -> Any:
    """Give a function sent by value its real file name back, for tracebacks."""
    code = getattr(f, "__code__", None)
    if filename and isinstance(f, types.FunctionType) and code is not None and code.co_filename != filename:
        f.__code__ = _with_filename(code, filename)
    return f


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(_with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)
