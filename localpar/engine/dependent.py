"""The engine's side of ``@depend`` / ``@require`` (``localpar.wire.dependent``) and of the
resumed attempt of a retried task (``resume``): operations looked up by name in the engine's
namespace module."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Tuple

from ..errors import UnmetDependency
from ..wire.messages import TASK_HEADER
from . import datapub
from .functions import bind_to_namespace


def _engine() -> Any:
    from .loop import current_engine

    return current_engine()


def _bound(f: Any, namespace: Dict[str, Any]) -> Any:
    f, captured = bind_to_namespace(f, namespace)
    namespace.update(captured)
    return f


class Dependent:
    """A `dependent` rebuilt on the engine: its check runs here before the function, both
    with the engine's namespace as globals (if defined in ``__main__``)."""

    def __init__(self, f: Callable[..., Any], df: Callable[..., Any], dargs: Tuple[Any, ...], dkwargs: Dict[str, Any]):
        self.f, self.df, self.dargs, self.dkwargs = f, df, dargs, dkwargs
        self.__name__ = getattr(f, "__name__", "f")
        self.__qualname__ = getattr(f, "__qualname__", self.__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        namespace = _engine().namespace
        if _bound(self.df, namespace)(*self.dargs, **self.dkwargs) is False:
            raise UnmetDependency(f"the dependency of {self.__name__} is not met on engine {_engine().id}")
        return _bound(self.f, namespace)(*args, **kwargs)


def dependent(f: Callable[..., Any], df: Callable[..., Any], dargs: Tuple[Any, ...], dkwargs: Dict[str, Any]) -> Any:
    return Dependent(f, df, dargs, dkwargs)


def require(*modules: str, **mapping: Any) -> bool:
    """Import `modules` into the engine's namespace and put `mapping` there; a module that
    cannot be imported is an `UnmetDependency` naming it."""
    namespace = _engine().namespace
    for name in modules:
        try:
            importlib.import_module(name)
            top = name.partition(".")[0]
            namespace[top] = importlib.import_module(top)
        except ImportError:
            raise UnmetDependency(name) from None
    for name, obj in mapping.items():
        namespace[name] = _bound(obj, namespace)
    return True


def resume(state: Dict[str, Any], call: bytes) -> Any:
    """Run a retried task's call with `state`, what its earlier attempts published, as
    ``resume_data()``."""
    engine = _engine()
    f, args, kwargs = engine.decode_call(TASK_HEADER.pack(0) + call)
    with datapub.resuming(state):
        return f(*args, **kwargs)
