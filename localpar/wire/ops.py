"""Engine operations named by the client, looked up on the engine: the views' push, pull, execute...

The client side never imports the engine's code: a view sends ``EngineOp("push")``, which pickles
as a call to `engine_op` and becomes, once unpickled on the engine, the function
``localpar.engine.namespace.push`` itself.  So the wire carries a name, and only the engine
process resolves it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable, TypeVar

ENGINE_NAMESPACE = "localpar.engine.namespace"


class EngineOp:
    """A function of the engine's namespace module, by name; only callable once on the engine."""

    __slots__ = ("__name__",)

    def __init__(self, name: str) -> None:
        self.__name__ = name

    def __reduce__(self) -> Any:
        return engine_op, (self.__name__,)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self!r} runs on an engine; send it with a view")

    def __repr__(self) -> str:
        return f"EngineOp({self.__name__!r})"


def engine_op(name: str) -> Callable[..., Any]:
    """On the engine, at unpickling: the named function of the engine's namespace module."""
    return getattr(importlib.import_module(ENGINE_NAMESPACE), name)


class KeptException:
    """What ``EngineOp("call_keeping_exception")`` returns for a call that raised: the exception
    itself (when it pickles) and the engine's traceback, so that the client can raise the task's
    own error (joblib's backend does, as joblib's other backends raise the worker's)."""

    __slots__ = ("exception", "traceback")

    def __init__(self, exception: BaseException, traceback: str) -> None:
        self.exception = exception
        self.traceback = traceback

    def __reduce__(self) -> Any:
        return KeptException, (self.exception, self.traceback)


F = TypeVar("F", bound=Callable[..., Any])


def interactive(f: F) -> F:
    """Resolve `f`'s globals in the engine's namespace (where push/execute write), as
    ipyparallel's ``@interactive`` does: `f` is rebuilt with ``__main__``'s globals (so, on the
    client, names resolve as for a function defined in a notebook cell) and sent by value."""
    if isinstance(f, types.FunctionType):
        main = sys.modules["__main__"]
        g = types.FunctionType(f.__code__, main.__dict__, f.__name__, f.__defaults__, f.__closure__)
        g.__kwdefaults__ = f.__kwdefaults__
        g.__dict__.update(f.__dict__)
        g.__qualname__, g.__doc__ = f.__qualname__, f.__doc__
        f = g  # type: ignore[assignment]
    f.__module__ = "__main__"
    return f
