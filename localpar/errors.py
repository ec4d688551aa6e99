"""Exceptions, named and shaped after ipyparallel's where it has one.

Every broken state has its own type, so that callers can tell a failing task (`RemoteError`)
from a dead engine (`EngineError`) from a dead data store (`DataStoreError`) without parsing
messages.  As in ipyparallel, the errors that can stand for a task's outcome share `KernelError`,
with `TaskAborted` beside `RemoteError` (``except RemoteError`` does not swallow an abort, a closed
client or "no engines"); a dead engine is a `RemoteError`, as ipyparallel raises it.  The
dependency errors keep ipyparallel's classes; what ``get()`` raises for a task the scheduler
failed is, as in ipyparallel, a `RemoteError` whose ``ename`` names them, and here it is also an
instance of them (see `scheduling_error`).
`LocalparError` is the base of everything localpar raises itself::

    LocalparError
    ├── KernelError                  a task's outcome: ename, evalue, traceback, engine_info
    │   ├── RemoteError              the task raised on its engine, or its engine died
    │   │   ├── EngineError          its engine died while the task was pending
    │   │   ├── CompositeError       several tasks of one call failed
    │   │   └── AlreadyDisplayedError
    │   ├── TaskAborted              aborted before it started
    │   ├── NoEnginesError           no live engine could run it
    │   ├── ClientClosedError        the client closed (also a RuntimeError)
    │   ├── TaskTimeout              a load-balanced task waited longer than its `timeout`
    │   └── UnmetDependency          a ``@depend`` check said no (raised on the engine)
    │       └── ImpossibleDependency its dependencies can no longer be met
    │           ├── DependencyTimeout  ... in time (its `timeout` passed)
    │           └── InvalidDependency  it names a task the client does not know
    ├── SerializationError           (also a TypeError)
    └── DataStoreError
"""

from __future__ import annotations

import signal
from typing import Any, List, Optional

__all__ = [
    "AlreadyDisplayedError",
    "ClientClosedError",
    "CompositeError",
    "DataStoreError",
    "EngineError",
    "KernelError",
    "LocalparError",
    "NoEnginesError",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "TaskAborted",
    "TaskTimeout",
    "UnmetDependency",
    "ImpossibleDependency",
    "DependencyTimeout",
    "InvalidDependency",
    "scheduling_error",
]


class LocalparError(Exception):
    """Base class of every error localpar raises itself."""


class KernelError(LocalparError):
    """What a task ended with instead of a value; carries a type name, message and traceback."""

    def __init__(
        self,
        ename: str,
        evalue: str,
        traceback: str,
        engine_info: Optional[dict[str, Any]] = None,
    ) -> None:
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.engine_info: dict[str, Any] = dict(engine_info or {})
        super().__init__(ename, evalue, traceback, self.engine_info)
        if traceback:
            # An uncaught RemoteError in a script or pytest shows the engine-side frames too,
            # as ProcessPoolExecutor does: Python prints a cause before the exception it caused.
            self.__cause__ = RemoteTraceback(traceback)

    @property
    def engine_id(self) -> Optional[int]:
        return self.engine_info.get("engine_id")

    def __str__(self) -> str:
        where = f"[engine {self.engine_id}] " if self.engine_id is not None else ""
        return f"{where}{self.ename}: {self.evalue}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}[{self.engine_id}]:{self.ename}({self.evalue})>"

    def render_traceback(self) -> List[str]:
        """The remote traceback as lines, as IPython shows it."""
        return self.traceback.splitlines() or [str(self)]

    def _render_traceback_(self) -> List[str]:  # IPython's hook for custom tracebacks
        return self.render_traceback()

    def print_traceback(self) -> None:
        print(self.traceback or str(self))


class RemoteError(KernelError):
    """The task raised on its engine; carries the remote type, message and traceback."""


class RemoteTraceback(Exception):
    """The cause chained to a `RemoteError`: its text is the traceback printed on the engine."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


class TaskAborted(KernelError):
    """The task was aborted before it started."""

    def __init__(self, msg_id: str, engine_id: Optional[int] = None) -> None:
        super().__init__(
            "TaskAborted",
            f"task {msg_id} was aborted before it started",
            "",
            {"engine_id": engine_id},
        )
        self.msg_id = msg_id


class CompositeError(RemoteError):
    """One or more engines failed in a multi-engine call.

    ``elist`` holds ``(ename, evalue, traceback, engine_info)`` tuples, as in
    ipyparallel; ``errors`` holds the `RemoteError` objects themselves.  At most
    ``tb_limit`` of them are drawn by ``str()`` and ``render_traceback()``.
    """

    tb_limit = 4

    def __init__(self, message: str, errors: List[KernelError]) -> None:
        self.message = message
        self.method = message.rpartition("raised in: ")[2] if "raised in: " in message else ""
        self.errors = list(errors)
        self.elist = [(e.ename, e.evalue, e.traceback, e.engine_info) for e in self.errors]
        tb = "\n\n".join(f"[{e.engine_id}:{e.ename}] {e.traceback or e}" for e in self.errors)
        super().__init__("CompositeError", message, tb)

    def _more(self) -> List[str]:
        extra = len(self.errors) - self.tb_limit
        return [f"... {extra} more exceptions ..."] if extra > 0 else []

    def __str__(self) -> str:
        lines = [self.message]
        lines += [f"[{e.engine_id}:{e.ename}]: {e.evalue}" for e in self.errors[: self.tb_limit]]
        return "\n".join(lines + self._more())

    def __repr__(self) -> str:
        return f"CompositeError({len(self.errors)} exceptions)"

    def render_traceback(self, excid: Optional[int] = None) -> List[str]:
        if excid is None:
            errors = self.errors[: self.tb_limit]
        else:
            try:
                errors = [self.errors[excid]]
            except IndexError:
                raise IndexError(f"an exception with index {excid} does not exist") from None
        lines: List[str] = []
        for e in errors:
            lines.append(f"[{e.engine_id}:{self.method or e.ename}]: ")
            lines += e.render_traceback()
            lines.append("")
        return lines + (self._more() if excid is None else [])

    def print_traceback(self, excid: Optional[int] = None) -> None:
        print("\n".join(self.render_traceback(excid)))

    def raise_exception(self, excid: int = 0) -> None:
        """Raise the `excid`-th underlying exception."""
        try:
            error = self.errors[excid]
        except IndexError:
            raise IndexError(f"an exception with index {excid} does not exist") from None
        raise error


class AlreadyDisplayedError(RemoteError):
    """``%%px --stream`` failed: the engines' errors were printed as they came, so IPython
    shows only how many there were (ipyparallel's name and behaviour)."""

    def __init__(self, original_error: CompositeError) -> None:
        self.original_error = original_error
        self.n = len(original_error.elist)
        super().__init__("AlreadyDisplayedError", str(self), "")

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self.n} errors)>"

    def __str__(self) -> str:
        return f"{self.n} errors"

    def render_traceback(self) -> List[str]:
        return [str(self)]


def describe_exit(exitcode: Optional[int]) -> str:
    if exitcode is None:
        return "an unknown exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = {
            "SIGKILL": " (killed: out of memory, or an explicit kill)",
            "SIGSEGV": " (segmentation fault in native code)",
            "SIGABRT": " (aborted by native code)",
            "SIGBUS": " (bus error: bad memory access)",
            "SIGTERM": " (terminated)",
        }.get(name, "")
        return f"{name}({exitcode}){hint}"
    return f"exit code {exitcode}"


class EngineError(RemoteError):
    """The engine process died while the task was pending on it.

    A `RemoteError`, as what ipyparallel's ``get()`` raises for a dead engine is (a RemoteError
    whose ``ename`` is ``'EngineError'``: its own ``test_z_crash`` catches it so); catch
    ``EngineError`` to tell a dead engine from a task's own exception."""

    def __init__(
        self, engine_id: int, exitcode: Optional[int], msg_id: Optional[str] = None, reason: Optional[str] = None
    ) -> None:
        self.exitcode = exitcode
        self.msg_id = msg_id
        self.reason = reason  # why localpar killed it (its memory limit), if it did
        task = f" while task {msg_id} was pending" if msg_id else ""
        why = f": {reason}" if reason else ""
        message = f"engine {engine_id} died with {describe_exit(exitcode)}{task}{why}"
        super().__init__("EngineError", message, "", {"engine_id": engine_id})

    def __reduce__(self) -> Any:
        return (type(self), (self.engine_id, self.exitcode, self.msg_id, self.reason))

    def __str__(self) -> str:
        return self.evalue


def not_picklable(obj: object, why: str) -> TypeError:
    """The error of pickling `obj`, an object that lives in the client's process only."""
    public = next(k.__name__ for k in type(obj).__mro__ if not k.__name__.startswith("_"))
    return TypeError(f"a localpar {public} cannot be pickled or sent to engines: {why}")


class SerializationError(LocalparError, TypeError):
    """An object could not be pickled or unpickled; the message names it."""


class DataStoreError(LocalparError):
    """The cluster's Manager process (the durable data store) is gone."""


class NoEnginesError(KernelError):
    """A view targets no live engine."""

    def __init__(self, message: str) -> None:
        super().__init__("NoEnginesError", message, "")

    def __str__(self) -> str:
        return self.evalue


class ClientClosedError(KernelError, RuntimeError):
    """The client was closed (its engines are gone), or belongs to another process.

    Also a ``RuntimeError``: what a closed client raised before, so that callers
    catching that keep working.
    """

    def __init__(self, message: str) -> None:
        super().__init__("ClientClosedError", message, "")

    def __str__(self) -> str:
        return self.evalue


def _message_only_init(self: KernelError, message: str = "", engine_info: Optional[dict[str, Any]] = None) -> None:
    KernelError.__init__(self, type(self).__name__, message, "", engine_info)


def _message_only_reduce(self: KernelError) -> Any:
    return (type(self), (self.evalue, self.engine_info))


def _message_only_str(self: KernelError) -> str:
    return self.evalue


class TaskTimeout(KernelError):
    """A load-balanced task was still waiting (for its dependencies, or for an engine it may
    run on) when its `timeout` passed (ipyparallel's name, under `KernelError`)."""

    __init__ = _message_only_init
    __reduce__ = _message_only_reduce
    __str__ = _message_only_str


class UnmetDependency(KernelError):
    """Raised on an engine by a ``@depend`` / ``@require`` check that says no: a load-balanced
    task is then tried on another engine, a direct one fails with it."""

    __init__ = _message_only_init
    __reduce__ = _message_only_reduce
    __str__ = _message_only_str


class ImpossibleDependency(UnmetDependency):
    """The task's dependencies can no longer be met: one failed (or succeeded) against its
    `Dependency`, the engine it must follow is gone, or no engine it may run on is left."""


class DependencyTimeout(ImpossibleDependency):
    """The task's `timeout` passed before its dependencies were met."""


class InvalidDependency(ImpossibleDependency):
    """The task depends on a msg_id the client does not know (or on itself)."""


class _RemoteTaskTimeout(RemoteError, TaskTimeout, DependencyTimeout):
    """What ``get()`` raises for a task whose `timeout` passed: ipyparallel's RemoteError with
    ``ename == 'TaskTimeout'``, that is also a `TaskTimeout` and a `DependencyTimeout`."""

    ename_of_kind = "TaskTimeout"


class _RemoteImpossibleDependency(RemoteError, ImpossibleDependency):
    ename_of_kind = "ImpossibleDependency"


class _RemoteInvalidDependency(RemoteError, InvalidDependency):
    ename_of_kind = "InvalidDependency"


def _remote_init(self: Any, message: str = "", engine_info: Optional[dict[str, Any]] = None) -> None:
    KernelError.__init__(self, self.ename_of_kind, message, "", engine_info)


def _remote_repr(self: KernelError) -> str:
    return f"<RemoteError[{self.engine_id}]:{self.ename}({self.evalue})>"


for _kind in (_RemoteTaskTimeout, _RemoteImpossibleDependency, _RemoteInvalidDependency):
    _kind.__init__ = _remote_init
    _kind.__reduce__ = _message_only_reduce
    _kind.__str__ = _message_only_str
    _kind.__repr__ = _remote_repr

_AS_REMOTE = {
    TaskTimeout: _RemoteTaskTimeout,
    DependencyTimeout: _RemoteTaskTimeout,
    ImpossibleDependency: _RemoteImpossibleDependency,
    InvalidDependency: _RemoteInvalidDependency,
}


def scheduling_error(kind: type, message: str) -> RemoteError:
    """The error of a task the scheduler failed without running it, as ``get()`` raises it:
    a `RemoteError` (as ipyparallel wraps it, ``ename`` naming the kind, ``engine_info`` empty)
    that is also an instance of `kind` (`TaskTimeout` also of `DependencyTimeout`), so that both
    ``except RemoteError`` and ``except ImpossibleDependency`` catch it."""
    return _AS_REMOTE[kind](message)
