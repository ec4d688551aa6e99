"""Publish data from inside a running task: ``publish_data(dict)``.

Each call merges the dict into the task's data with ``dict.update`` semantics and
sends the change at once through the cluster's publication queue; the client
applies it to ``AsyncResult.data``.  The engine also keeps the merged state and
stores it, coalesced, in the cluster's Manager dict so that it survives the engine.

Outside a localpar engine, inside an ipyparallel engine, the call forwards to
ipyparallel's own ``publish_data``: the same function scales out unchanged.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Dict, Iterator, Mapping, Optional, Tuple

if TYPE_CHECKING:
    from .publishing import TaskContext

_current: Optional[TaskContext] = None
"""The task running on this engine process, set by the engine loop."""


_resumed: Optional[Tuple[TaskContext, Dict[str, Any]]] = None
"""The running task's earlier attempts' data, while a retried task runs (see `resume_data`)."""


def bind(task: Optional[TaskContext]) -> None:
    """The engine loop names the task now running in this process (None between tasks)."""
    global _current
    _current = task


def publish_data(data: Mapping[str, Any]) -> None:
    """Merge `data` into this task's published data, visible live on the client's ``ar.data``."""
    if not isinstance(data, dict):
        raise TypeError(f"publish_data expects a dict, got {type(data).__name__}: {data!r:.80}")
    task = _current
    if task is None:
        _forward_to_ipyparallel(data)
        return
    task.engine.publish(task, data)


def report_progress(done: int, total: int) -> None:
    """Report this task's own progress; shown per engine by ``ar.wait_interactive()``."""
    if total <= 0 or done < 0:
        raise ValueError(f"report_progress needs 0 <= done and total > 0, got {done}/{total}")
    task = _current
    if task is None:
        raise RuntimeError(_OUTSIDE)
    task.engine.report_progress(task, done, total)


def resume_data() -> Dict[str, Any]:
    """What this task's earlier attempts published, merged, when the load balancer retries it
    (``retries``) after it raised or its engine died; an empty dict on a first attempt.

    It is the task's ``ar.data`` as the client had it when the last attempt ended, with the
    Manager's durable copy merged in where that was newer: the last publication that left the
    engine, not a checkpoint of the task's memory.  A task that publishes its state as it goes
    can start again from there::

        state = resume_data()
        for step in range(state.get("step", -1) + 1, steps):
            ...
            publish_data({"step": step, ...})
    """
    task = _current
    if task is None:
        if _in_ipyparallel_engine():
            return {}  # ipyparallel never resumes a task
        raise RuntimeError("resume_data must be called inside a task running on a localpar engine")
    resumed = _resumed
    return dict(resumed[1]) if resumed is not None and resumed[0] is task else {}


@contextlib.contextmanager
def resuming(state: Dict[str, Any]) -> Iterator[None]:
    """While the block runs, `resume_data()` of the running task returns `state` (the engine's
    ``resume`` operation)."""
    global _resumed
    task = _current
    if task is None:
        raise RuntimeError("resuming() outside a task")
    _resumed = (task, state)
    try:
        yield
    finally:
        _resumed = None


def _in_ipyparallel_engine() -> bool:
    try:
        from ipykernel.kernelbase import Kernel

        return bool(Kernel.initialized()) and hasattr(Kernel.instance(), "engine_id")
    except Exception:
        return False


_OUTSIDE = "publish_data must be called inside a task running on a localpar engine (or an ipyparallel engine)"


def _forward_to_ipyparallel(data: Dict[str, Any]) -> None:
    try:
        from ipykernel.kernelbase import Kernel

        kernel = Kernel.initialized() and Kernel.instance()
    except Exception:
        kernel = None
    if kernel is None or not hasattr(kernel, "engine_id"):
        raise RuntimeError(_OUTSIDE)
    from ipyparallel.datapub import publish_data as ipp_publish_data

    ipp_publish_data(data)
