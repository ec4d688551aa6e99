"""Operations on an engine's namespace, sent as ordinary tasks by the views.

They run *on the engine* (pickled by reference, so they cost nothing to send):
push/pull/execute/run act on the engine's namespace dict, which is also the
globals of every function defined in ``__main__`` (a script or a notebook) or
marked ``@interactive``, as on an ipyparallel engine.
"""

from __future__ import annotations

import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union


def current_engine() -> Any:
    from .engine import current_engine as _current  # engine imports this module

    return _current()


F = TypeVar("F", bound=Callable[..., Any])


def interactive(f: F) -> F:
    """Resolve `f`'s globals in the engine's namespace (where push/execute write)."""
    f.__module__ = "__main__"
    return f


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
    return bound, captured


def restore_filename(f: Any, filename: Optional[str]) -> Any:
    """Give a function sent by value its real file name back, for tracebacks."""
    code = getattr(f, "__code__", None)
    if filename and isinstance(f, types.FunctionType) and code is not None and code.co_filename != filename:
        f.__code__ = _with_filename(code, filename)
    return f


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(_with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def push(values: Dict[str, Any]) -> None:
    current_engine().namespace.update(values)


def pull(names: Union[str, Sequence[str]]) -> Any:
    namespace = current_engine().namespace
    missing = [n for n in ([names] if isinstance(names, str) else names) if n not in namespace]
    if missing:
        raise NameError(f"name(s) {missing} not defined on engine {current_engine().id}")
    if isinstance(names, str):
        return namespace[names]
    return [namespace[n] for n in names]


def clear() -> None:
    """Empty the engine's namespace (keeping what every namespace starts with)."""
    ns = current_engine().namespace
    kept = {k: ns[k] for k in ("__name__", "__builtins__") if k in ns}
    ns.clear()
    ns.update(kept)


def execute(code: str, filename: str = "<execute>") -> None:
    exec(compile(code, filename, "exec"), current_engine().namespace)


def map_chunk(f: Callable[..., Any], *chunks: Sequence[Any]) -> List[Any]:
    namespace = current_engine().namespace
    f, captured = bind_to_namespace(f, namespace)
    namespace.update(captured)
    return [f(*items) for items in zip(*chunks)]


def engine_id() -> int:
    return current_engine().id
