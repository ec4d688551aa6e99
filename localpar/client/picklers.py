"""``view.use_cloudpickle()``, ``use_pickle()``, ``use_dill()``: ipyparallel's serializer switches,
and what they mean on localpar, whose calls always travel through cloudpickle.

What changes between ipyparallel's serializers, for code that works under both, is where a
function defined in ``__main__`` (a notebook cell, or ``@interactive``) finds the globals it
names.  That is the one thing these switches set, per Client:

- ``use_cloudpickle()`` (localpar's default): the function travels with the client's values of
  the globals it names; a name the client does not define resolves in the engine's namespace.
- ``use_pickle()`` (ipyparallel's default): it travels without them, and every global it names
  resolves in the engine's namespace (what ``push`` and ``execute`` wrote there), as
  ipyparallel's canning of interactive functions does.  Such functions, lambdas and closures
  still travel (ipyparallel's canning sends them too); other objects pickle as before.
- ``use_dill()``: needs dill installed (``ImportError`` otherwise, as ipyparallel's); then as
  ``use_cloudpickle()``: cloudpickle already sends what dill is used for (closures, lambdas,
  classes defined in a notebook).

ipyparallel's switches act on the whole process and its engines; here on the view's Client
(its other views too), and nothing changes on the engines.  Each returns what ipyparallel's
does: ``view.apply`` of a function that does nothing (an AsyncResult of ``[None, ...]`` on a
non-blocking view).
"""

from __future__ import annotations

import types
from typing import Any, Callable, Dict, Tuple

CLIENT_GLOBALS = "cloudpickle"
ENGINE_GLOBALS = "pickle"

_NOTHING = type(None)  # called on each engine, it returns None: the AsyncResult ipyparallel's switches return


def engine_globals_only(f: Any) -> Any:
    """`f` without the client's globals, if it is a function defined in ``__main__``: on the
    engine, every global it names resolves in the namespace (``use_pickle``)."""
    if not isinstance(f, types.FunctionType) or f.__module__ != "__main__":
        return f
    bare = types.FunctionType(f.__code__, {}, f.__name__, f.__defaults__, f.__closure__)
    bare.__kwdefaults__ = f.__kwdefaults__
    bare.__dict__.update(f.__dict__)
    bare.__qualname__ = f.__qualname__
    bare.__module__ = "__main__"  # sent by value, rebuilt on the engine's namespace
    bare.__doc__ = f.__doc__
    return bare


def strip_call(
    f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]
) -> Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]:
    """A call whose ``__main__`` functions (the function, and functions given as arguments,
    such as a map's) carry no client globals."""
    return engine_globals_only(f), tuple(engine_globals_only(a) for a in args), kwargs


def switch(view: Any, mode: str) -> Any:
    """Set `view`'s Client to `mode`; return ``view.apply`` of a no-op, as ipyparallel does."""
    if mode == "dill":
        try:
            import dill  # noqa: F401
        except ImportError:
            raise ImportError("use_dill() needs dill: pip install dill") from None
        mode = CLIENT_GLOBALS
    view.client.main_globals = mode
    return view.apply(_NOTHING)
