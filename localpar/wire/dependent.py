"""Functional dependencies: ``@depend(f, *args)`` and ``@require(*modules)``, as ipyparallel has them.

``@depend(check, *args, **kwargs)`` turns a function into a `dependent`: on the engine, before
the function runs, ``check(*args, **kwargs)`` runs there, and if it returns False (or raises
`UnmetDependency`) the task does not run and fails with `UnmetDependency`.  A load-balanced task
is then tried on another engine (the one that said no is not asked again); a direct one fails.
``@require('numpy', helper, name=obj)`` is a ``@depend`` whose check imports the named modules
into the engine's namespace and puts the objects there (a function under its ``__name__``); a
module that cannot be imported is an unmet dependency.

These objects cross to the engines: a `dependent` pickles as a call that builds, on the engine,
the engine's own form of it (``localpar.engine.dependent``, looked up by name as ``ops``
does), so that neither side imports the other's code.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable, Dict, Tuple

from .ops import ENGINE_NAMESPACE, EngineOp


def build_on_engine(name: str, args: Tuple[Any, ...]) -> Any:
    """At unpickling, on the engine: the engine namespace module's `name` called with `args`."""
    return getattr(importlib.import_module(ENGINE_NAMESPACE), name)(*args)


class depend:
    """``@depend(check, *args, **kwargs)``: the decorated function runs only on an engine where
    ``check(*args, **kwargs)`` does not return False (ipyparallel's ``depend``)."""

    def __init__(self, _wrapped_f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not callable(_wrapped_f):
            raise TypeError(f"depend needs a callable check, got {type(_wrapped_f).__name__}: {_wrapped_f!r:.80}")
        self.f = _wrapped_f
        self.args = args
        self.kwargs = kwargs

    def __call__(self, f: Callable[..., Any]) -> dependent:
        return dependent(f, self.f, *self.args, **self.kwargs)


class dependent:
    """A function with a dependency check (made by `depend`); an object rather than a closure,
    so that it pickles.  Called here, it runs the check and then the function, as on an engine."""

    def __init__(self, _wrapped_f: Callable[..., Any], _wrapped_df: Callable[..., Any], *dargs: Any, **dkwargs: Any):
        self.f = _wrapped_f
        self.__name__ = getattr(_wrapped_f, "__name__", "f")
        self.df = _wrapped_df
        self.dargs = dargs
        self.dkwargs = dkwargs

    def check_dependency(self) -> None:
        from ..errors import UnmetDependency

        if self.df(*self.dargs, **self.dkwargs) is False:
            raise UnmetDependency(f"the dependency of {self.__name__} is not met here")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.check_dependency()
        return self.f(*args, **kwargs)

    def __reduce__(self) -> Any:
        return build_on_engine, ("dependent", (self.f, self.df, self.dargs, self.dkwargs))

    def __repr__(self) -> str:
        return f"<dependent {self.__name__} on {getattr(self.df, '__name__', self.df)!r}>"


def require(*objects: Any, **mapping: Any) -> depend:
    """``@require('numpy', helper, name=obj)``: before the function runs on an engine, import
    the modules (named, or given as module objects) into its namespace and put the objects there
    (functions given positionally under their ``__name__``); a module that cannot be imported
    there is an unmet dependency (ipyparallel's ``require``)."""
    names = []
    pushed: Dict[str, Any] = {}
    for obj in objects:
        if isinstance(obj, ModuleType):
            obj = obj.__name__
        if isinstance(obj, str):
            names.append(obj)
        elif hasattr(obj, "__name__"):
            pushed[obj.__name__] = obj
        else:
            raise TypeError(f"Objects other than modules and functions must be passed by kwarg, but got: {type(obj)}")
    pushed.update(mapping)
    return depend(EngineOp("require"), *names, **pushed)
