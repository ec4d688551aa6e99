"""``Reference('name')``: an argument that names an object in the engine's namespace.

As in ipyparallel, ``view.apply(f, Reference('a'))`` calls ``f`` on each engine with
*that engine's* ``a``; any expression works (``Reference('g[0]')``), a reference may sit
inside a list, tuple or dict argument, stand for the function itself, or be an item
of a mapped sequence.  Calls are only inspected for references once one exists.
"""

from __future__ import annotations

from typing import Any, Dict

_CONTAINERS = (list, tuple, dict)


class Reference:
    """A name (or expression) evaluated in the engine namespace when the task runs."""

    used = False  # set by the first Reference: before that, calls are not inspected

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"illegal name: {name!r}")
        self.name = name
        Reference.used = True

    def __repr__(self) -> str:
        return f"<Reference: {self.name!r}>"

    def get_object(self, namespace: Dict[str, Any]) -> Any:
        return eval(self.name, namespace)

    def __setstate__(self, state: Dict[str, Any]) -> None:  # unpickled on an engine: it is used there too
        self.__dict__.update(state)
        Reference.used = True


def contains_reference(obj: Any, depth: int = 4) -> bool:
    """Whether `obj` is, or holds in nested lists, tuples and dicts, a `Reference`."""
    if isinstance(obj, Reference):
        return True
    if depth and isinstance(obj, _CONTAINERS):
        items = obj.values() if isinstance(obj, dict) else obj
        return any(contains_reference(item, depth - 1) for item in items)
    return False


def resolve(obj: Any, namespace: Dict[str, Any], depth: int = 4) -> Any:
    """`obj` with each `Reference` replaced by the object it names in `namespace`."""
    if isinstance(obj, Reference):
        return obj.get_object(namespace)
    if depth and isinstance(obj, _CONTAINERS) and contains_reference(obj, depth):
        if isinstance(obj, dict):
            return {k: resolve(v, namespace, depth - 1) for k, v in obj.items()}
        items = [resolve(item, namespace, depth - 1) for item in obj]
        return type(obj)(items) if type(obj) in (list, tuple) else obj
    return obj
