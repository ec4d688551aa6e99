"""What a function sent by value captures, and when its pickle may be reused.

cloudpickle sends a function defined in ``__main__`` (a script, a notebook), a
lambda or a closure by value: its code together with what it refers to -- the
globals it names, its closure cells, its defaults.  Pickling that costs about
as much as the rest of a call.  One rule decides when it can be skipped:

    The pickle of a function sent by value is reused while every object it
    captures is the very same object as when it was pickled, and each of them
    is immutable: None, numbers, strings, bytes, tuples and frozensets of such,
    modules, classes and functions pickled by reference, and functions sent by
    value that follow this rule themselves.  A function that captures anything
    mutable (a list, a dict, an array, an instance, a class defined in
    ``__main__``, a function with attributes) is pickled again at every call.

So an engine always runs with the client's current values: rebinding a name
makes a new pickle, and an object that could change in place is never taken
from a cache, on the client or on an engine.

This module imports nothing of the client's side; engines use it too.
"""

from __future__ import annotations

import types
from typing import Any, Dict, List, Optional, Set, Tuple

import cloudpickle

Snapshot = Tuple[Any, ...]

_ATOMS = frozenset(
    {type(None), bool, int, float, complex, str, bytes, range, type(Ellipsis), type(NotImplemented), types.CodeType}
)
_MISSING = object()  # a name the function uses that its globals do not hold (a builtin, or not yet defined)
_SELF = object()  # the function itself, among what it captures (recursion)
_MAX_NAMES_CACHED = 1024
_names: Dict[types.CodeType, Tuple[str, ...]] = {}


def snapshot(f: types.FunctionType) -> Optional[Snapshot]:
    """Everything `f` captures, in a fixed order; None if any of it may change in place.

    Two snapshots of the same function compare equal (`same`) exactly when
    its pickle would be the same.
    """
    out: List[Any] = []
    return tuple(out) if _function(f, f, out, set()) else None


def reusable(obj: Any) -> bool:
    """Whether an unpickled callable may serve again for the same bytes (by the rule above)."""
    if type(obj) is types.BuiltinFunctionType:
        return True
    if type(obj) is types.FunctionType:
        return by_reference(obj) or snapshot(obj) is not None
    return isinstance(obj, type) and by_reference(obj)


def same(a: Snapshot, b: Snapshot) -> bool:
    """Whether two snapshots hold the very same objects."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _function(f: types.FunctionType, top: types.FunctionType, out: List[Any], seen: Set[int]) -> bool:
    if f.__dict__:  # attributes live in a mutable dict
        return False
    code = f.__code__
    out += (code, f.__name__, f.__qualname__, f.__module__, f.__doc__, f.__defaults__)
    if f.__kwdefaults__ or f.__annotations__:
        return False  # dicts; rare enough to pickle every time
    if not _immutable(f.__defaults__, top, out, seen):
        return False
    names = _names.get(code)
    if names is None:
        names = _code_names(code)
        if len(_names) >= _MAX_NAMES_CACHED:
            _names.pop(next(iter(_names)))
        _names[code] = names
    namespace = f.__globals__
    for name in names:
        value = namespace.get(name, _MISSING)
        if not _captured(value, top, out, seen):
            return False
    for cell in f.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            value = _MISSING
        if not _captured(value, top, out, seen):
            return False
    return True


def _captured(value: Any, top: types.FunctionType, out: List[Any], seen: Set[int]) -> bool:
    out.append(_SELF if value is top else value)
    return value is top or _immutable(value, top, out, seen)


def _immutable(value: Any, top: types.FunctionType, out: List[Any], seen: Set[int]) -> bool:
    kind = type(value)
    if kind in _ATOMS or value is _MISSING:
        return True
    if kind is tuple or kind is frozenset:
        return all(_immutable(item, top, out, seen) for item in value)
    if kind is types.ModuleType or kind is types.BuiltinFunctionType:
        return True  # pickled by name
    if kind is types.FunctionType or isinstance(value, type):
        if id(value) in seen or value is top:
            return True
        seen.add(id(value))
        if by_reference(value):
            return True
        return kind is types.FunctionType and _function(value, top, out, seen)
    return False


def by_reference(obj: Any) -> bool:
    """Whether cloudpickle pickles `obj` (a function or class) by its import path."""
    check = getattr(getattr(cloudpickle, "cloudpickle", None), "_should_pickle_by_reference", None)
    try:
        return bool(check(obj)) if check is not None else False
    except Exception:
        return False


def _code_names(code: types.CodeType) -> Tuple[str, ...]:
    """The global names `code` (and code nested in it) may look up; a superset of what cloudpickle captures."""
    names: Dict[str, None] = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(_code_names(const)))
    return tuple(names)
