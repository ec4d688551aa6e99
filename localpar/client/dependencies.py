"""Load-balanced task flags: `retries`, `after`, `follow`, `timeout`, as ipyparallel defines them.

- ``after``: a time dependency; the task waits until its `Dependency` is met (by default: every
  task named finished without error).  ``follow``: a location dependency; the task runs on the
  engine where the tasks named ran (the very engine process: a replacement with the same id has
  lost their state), once they are finished.  A dependency that can no longer be met (a task it
  needs to succeed failed, the engine to follow is dead) fails the task with
  `ImpossibleDependency`; one naming a msg_id the client does not know with `InvalidDependency`.
- ``retries``: a task that raised, or whose engine died, runs again, up to that many times, on an
  engine that has not failed it yet (the engine that failed it is left out, as ipyparallel does;
  a replacement with the same id counts as another engine).  An ``@depend`` check that says no
  leaves that engine out too, without counting a retry.
- ``timeout``: seconds a task may wait (for its dependencies, or for an engine it may run on)
  before it fails with `TaskTimeout` (also a `DependencyTimeout`); once on an engine it may run
  as long as it takes.

Where the state lives: a task's flags and scheduling state are a `TaskFlags` on its record
(``record.flags``, None for a task without flags: the plain path pays nothing), guarded by the
balancer's lock.  A task waiting for dependencies costs nothing while it waits: it sits in
`Waits`, by the msg_ids it waits for, and the completion of one of those (``Ledger.complete``
on a record marked ``watched``) wakes exactly the tasks waiting for it, with O(1) work per
dependency (the counts in `Progress`).  Timeouts are entries in one `Deadlines` heap that the
collector thread watches (its poll's timeout is the nearest deadline), so no thread waits per
task and nothing polls.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from ..wire.serialization import dumps_call
from .asyncresult import AsyncResult

if TYPE_CHECKING:
    from .handles import EngineHandle, TaskRecord


class Dependency(set):
    """A set of msg_ids a task depends on (ipyparallel's ``Dependency``).

    `dependencies`: msg_ids, AsyncResults (their msg_ids), a list of those, or the dict of
    `as_dict`.  With ``all=True`` every one must be finished, else any one; ``success`` and
    ``failure`` say which outcomes count.  ``Dependency(ids)`` (success, not failure) becomes
    impossible as soon as one of them fails.
    """

    all = True
    success = True
    failure = False

    def __init__(self, dependencies: Any = (), all: bool = True, success: bool = True, failure: bool = False):
        if isinstance(dependencies, dict):
            all = dependencies.get("all", True)
            success = dependencies.get("success", success)
            failure = dependencies.get("failure", failure)
            dependencies = dependencies.get("dependencies", [])
        if isinstance(dependencies, (str, AsyncResult)):
            dependencies = [dependencies]
        ids: List[str] = []
        for d in dependencies:
            if isinstance(d, str):
                ids.append(d)
            elif isinstance(d, AsyncResult):
                ids.extend(d.msg_ids)
            else:
                raise TypeError(f"invalid dependency type: {type(d)!r}")
        super().__init__(ids)
        if not (success or failure):
            raise ValueError("Must depend on at least one of successes or failures!")
        self.all = all
        self.success = success
        self.failure = failure

    def check(self, completed: Set[str], failed: Optional[Set[str]] = None) -> bool:
        """Whether it is met, given the msg_ids that succeeded and those that failed."""
        if not self:
            return True
        against = set(completed) if self.success else set()
        if failed is not None and self.failure:
            against |= failed
        return self.issubset(against) if self.all else not self.isdisjoint(against)

    def unreachable(self, completed: Set[str], failed: Optional[Set[str]] = None) -> bool:
        """Whether it can no longer be met, given the same."""
        if not self:
            return False
        against = set(completed) if not self.success else set()
        if failed is not None and not self.failure:
            against |= failed
        return not self.isdisjoint(against) if self.all else self.issubset(against)

    def as_dict(self) -> Dict[str, Any]:
        return {"dependencies": list(self), "all": self.all, "success": self.success, "failure": self.failure}

    def __reduce__(self) -> Any:
        return (Dependency, (self.as_dict(),))


def valid_dependency(dep: Any) -> bool:
    """Whether `dep` may be set as ``after`` / ``follow`` (ipyparallel's check in ``set_flags``)."""
    if dep is None or isinstance(dep, (str, AsyncResult, Dependency)):
        return True
    if isinstance(dep, (list, set, tuple)):
        return all(isinstance(d, (str, AsyncResult)) for d in dep)
    if isinstance(dep, dict):
        return set(dep) == {"dependencies", "all", "success", "failure"} and all(
            isinstance(d, str) for d in dep["dependencies"]
        )
    return False


def as_dependency(dep: Any) -> Optional[Dependency]:
    """A flag's value as a `Dependency`, or None for no dependency."""
    if dep is None:
        return None
    dep = dep if isinstance(dep, Dependency) else Dependency(dep)
    return dep if dep else None


class FlagValues:
    """The flags of one submission, as the view had them (validated)."""

    __slots__ = ("retries", "timeout", "after", "follow")

    def __init__(self, retries: int, timeout: float, after: Optional[Dependency], follow: Optional[Dependency]):
        self.retries, self.timeout, self.after, self.follow = retries, timeout, after, follow


class Progress:
    """How far one task's `Dependency` is: how many of its msg_ids finished in a way that
    counts (`met`) or that rules it out (`bad`), and, for ``follow``, where they ran."""

    __slots__ = ("dep", "met", "bad", "where", "located")

    def __init__(self, dep: Dependency) -> None:
        self.dep = dep
        self.met = 0
        self.bad = 0
        self.where: Set[Any] = set()  # engine handles where the met ones ran (follow)
        self.located = False  # `where` holds at least one met task's engine

    def finished(self, ok: bool, engine: Optional[EngineHandle]) -> None:
        """One of its msg_ids finished (ok: without error), on `engine` (None: on none that is left)."""
        counts = self.dep.success if ok else self.dep.failure
        if not counts:
            self.bad += 1
            return
        self.met += 1
        here = {engine} if engine is not None else set()
        if not self.located:
            self.where, self.located = here, True
        elif self.dep.all:
            self.where &= here
        else:
            self.where |= here

    def is_met(self) -> bool:
        return self.met == len(self.dep) if self.dep.all else self.met > 0

    def is_unreachable(self) -> bool:
        return self.bad > 0 if self.dep.all else self.bad == len(self.dep)


class TaskFlags:
    """One load-balanced task's flags and scheduling state (``record.flags``; the balancer's lock)."""

    __slots__ = (
        "retries", "timeout", "targets", "after", "follow", "blacklist", "waiting_for",
        "wait_token", "call", "deadline",
    )  # fmt: skip

    def __init__(self, values: Optional[FlagValues], targets: Optional[List[int]]) -> None:
        self.retries = max(0, values.retries) if values is not None else 0
        self.timeout = values.timeout if values is not None else 0.0
        self.targets = targets  # the view's, by id
        self.after = Progress(values.after) if values is not None and values.after else None
        self.follow = Progress(values.follow) if values is not None and values.follow else None
        self.blacklist: Set[EngineHandle] = set()  # engines that failed it, or said no to its @depend
        self.waiting_for = 0  # msg_ids still to finish
        self.wait_token = 0  # bumped when the task stops waiting: an older deadline is void
        self.call: Optional[bytes] = None  # the call as first submitted (a retry may wrap it)
        self.deadline = 0.0

    def unreachable(self) -> bool:
        """Its dependencies can no longer be met: one finished the wrong way, or (``follow``
        with ``all``) those met ran on different engines, or on one that is gone."""
        if self.after is not None and self.after.is_unreachable():
            return True
        follow = self.follow
        return follow is not None and (
            follow.is_unreachable() or (follow.dep.all and follow.located and not follow.where)
        )

    def met(self) -> bool:
        return all(p is None or p.is_met() for p in (self.after, self.follow))

    def location(self) -> Optional[Set[Any]]:
        """The engines a ``follow`` allows (None: any)."""
        return None if self.follow is None else self.follow.where

    def may_run_on(self, handle: EngineHandle) -> bool:
        if handle in self.blacklist or (self.targets is not None and handle.id not in self.targets):
            return False
        return self.follow is None or handle in self.follow.where


def ran_on(record: TaskRecord, engines: Dict[int, EngineHandle]) -> Optional[EngineHandle]:
    """The engine process that ran a finished task, if it is the one still known by its id
    (a replacement started after the task ended is another engine)."""
    handle = engines.get(record.engine_id) if record.engine_id >= 0 else None
    if handle is None:
        return None
    ended = record.received or record.completed or 0.0
    return handle if handle.created <= ended else None


def find_records(index: Any, db: Any, msg_ids: Iterable[str]) -> Dict[str, TaskRecord]:
    """The records of these msg_ids that the client still knows: through `index` (its
    ResultIndex, AsyncResults by msg_id; each AsyncResult's records indexed once), else in the
    task database `db` (``taskdb.TaskDB``: a task whose AsyncResult is gone, as ipyparallel's
    Hub remembers it)."""
    msg_ids = list(msg_ids)
    by_result: Dict[int, Tuple[AsyncResult, List[str]]] = {}
    for msg_id in msg_ids:
        try:
            ar = index[msg_id]
        except KeyError:
            continue
        by_result.setdefault(id(ar), (ar, []))[1].append(msg_id)
    found: Dict[str, TaskRecord] = {}
    for ar, wanted in by_result.values():
        records = {r.msg_id: r for r in ar.records}
        found.update((m, records[m]) for m in wanted if m in records)
    for msg_id in set(msg_ids) - found.keys() if db is not None else ():
        entry = db.entry(msg_id)
        if entry is not None:
            found[msg_id] = entry.record
    return found


def encode_call(cluster_id: str, call: Tuple[Any, Tuple[Any, ...], Dict[str, Any]]) -> Tuple[bytes, list]:
    """``(f, args, kwargs)`` pickled for the engines of cluster `cluster_id` (a retry's call)."""
    return dumps_call(*call, cluster_id)


class Waits:
    """Tasks waiting for dependencies, by the msg_id they wait for (the balancer's lock)."""

    def __init__(self) -> None:
        self.by_msg_id: Dict[str, List[TaskRecord]] = {}
        self.held: Dict[TaskRecord, Any] = {}  # waiting task -> its queue entry

    def wait(self, msg_id: str, record: TaskRecord) -> None:
        self.by_msg_id.setdefault(msg_id, []).append(record)

    def woken(self, msg_id: str) -> List[TaskRecord]:
        return self.by_msg_id.pop(msg_id, [])

    def forget(self, records: Iterable[TaskRecord]) -> List[Any]:
        """Stop holding these records (aborted, cancelled, timed out); returns their entries."""
        return [entry for r in records if (entry := self.held.pop(r, None)) is not None]


class Deadlines:
    """Timeouts of waiting tasks: one heap, watched by the collector thread (it polls with the
    nearest deadline as timeout and fires what is due).  Its own lock: submitters add."""

    def __init__(self, ring: Callable[[], None], expire: Callable[[TaskRecord, int], None]) -> None:
        self._heap: List[Tuple[float, int, Any, int]] = []
        self._lock = threading.Lock()
        self._count = itertools.count()
        self._ring = ring  # wakes the collector to look at a new, nearer deadline
        self._expire = expire  # called with (record, token) once its time has come

    def add(self, when: float, record: TaskRecord, token: int) -> None:
        with self._lock:
            nearer = not self._heap or when < self._heap[0][0]
            heapq.heappush(self._heap, (when, next(self._count), record, token))
        if nearer:
            self._ring()

    def poll_timeout(self) -> int:
        """Milliseconds until the nearest deadline (-1: none), for ``poll``."""
        heap = self._heap
        if not heap:
            return -1
        return max(0, int((heap[0][0] - time.monotonic()) * 1000) + 1)

    def fire(self) -> None:
        """Expire the entries whose time has come (the collector thread, after each poll)."""
        heap = self._heap
        if not heap:
            return
        now = time.monotonic()
        due = []
        with self._lock:
            while heap and heap[0][0] <= now:
                _, _, record, token = heapq.heappop(heap)
                due.append((record, token))
        for record, token in due:
            self._expire(record, token)

    def clear(self) -> None:
        with self._lock:
            self._heap.clear()
