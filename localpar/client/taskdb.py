"""The task database: ipyparallel's Hub records, kept in the client (in memory, bounded).

Every task the client submits gets an entry here when its record is made (``add``: a few
dict writes, no lock) and its outcome when the ledger completes it (``finished``: one deque
append of the record and the data it published; the next submission or reader files it,
with its size estimate, under the lock).  An entry holds the task's
own ``TaskRecord`` (read only once done: the collector wrote its fields before completing
it), the call (for ``resubmit``), its queue (``"task"`` for load-balanced, ``"mux"`` for a
direct view) and whether it was resubmitted.  Rows in ipyparallel's shape (``row``) are built
only when asked for, by ``db_query`` and ``get_result``.

Bounded as ipyparallel's ``DictDB``: past `record_limit` entries, or past `size_limit`
bytes of results, arguments, output and data of finished tasks, the oldest *finished*
entries (in the order they finished) are dropped, a `cull_fraction` of the limit at a
time; a pending task is never dropped.  Sizes are estimates (``approx_size``: bytes,
strings, arrays by ``nbytes``, containers by a sample of their items).

Ownership: `lock` guards `_finished`, `_bytes`, `_resub`, the filing of finished tasks
(``_file_finished`` empties `_done`, replaces a pending task's TaskRecord in `_entries` by its
Entry, pops `_kept` and `_balanced`) and every deletion.  Made without it, each one write and
atomic under the GIL: ``add``'s inserts into `_entries`, `_kept` and `_balanced` (a new key),
``finished``'s append to `_done` (a deque), and readers' one-call copies of `_entries`
(``finished`` takes it only to swap a pinned task's record for its copy, see ``Entry.result``).  It is
never held while anything else is taken or user code runs.  An optional `sink`
(``sqlitedb.SQLiteStore``) is told the same events, in the same order, outside the lock.

The query engine (``matches``) takes ipyparallel's Mongo-style queries:
``{key: value}`` (equality) or ``{key: {op: operand, ...}}`` with ``$lt``, ``$gt``,
``$lte``/``$le``, ``$gte``/``$ge``, ``$eq``, ``$ne``, ``$in``, ``$nin`` and ``$exists``;
an ordering test on a missing value (None) is False.  Naive datetimes in a query are
taken as local time, as ipyparallel does.
"""

from __future__ import annotations

import collections
import copy
import itertools
import threading
import weakref
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from ..errors import KernelError, RemoteError

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .handles import TaskRecord

    Call = Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]

RECORD_LIMIT = 1024
"""Entries kept in memory by default (ipyparallel's ``DictDB.record_limit``)."""
SIZE_LIMIT = 1024**3
"""Estimated bytes of finished tasks kept in memory by default (``DictDB.size_limit``, 1 GiB)."""
CULL_FRACTION = 0.1
"""The share of a limit dropped at once when it is passed (``DictDB.cull_fraction``)."""

DEFAULT_KEYS = (
    "msg_id", "header", "content", "metadata", "queue", "engine_uuid", "engine_id", "client_uuid",
    "submitted", "started", "completed", "received", "resubmitted", "result_header", "result_content",
    "result_metadata", "status", "stdout", "stderr", "error", "execute_input", "execute_result", "label",
)  # fmt: skip
"""The keys of a row that ``db_query`` returns when no `keys` are given."""
EXTRA_KEYS = ("result", "data")
"""Keys returned only when asked for (as ipyparallel returns buffers): the value (or the
exception of a failed task) and the data the task published."""
ALL_KEYS = frozenset(DEFAULT_KEYS + EXTRA_KEYS)


class Flat:
    """One task as the databases store it: plain fields, whatever keeps them (memory or SQLite)."""

    __slots__ = (
        "msg_id", "client_uuid", "queue", "fname", "engine_id", "submitted", "started", "completed",
        "received", "status", "stdout", "stderr", "error", "resubmitted", "execute_result", "load",
    )  # fmt: skip

    def __init__(self, msg_id: str, client_uuid: str, queue: str, fname: str = "unknown") -> None:
        self.msg_id = msg_id
        self.client_uuid = client_uuid
        self.queue = queue
        self.fname = fname
        self.engine_id: Optional[int] = None
        self.submitted: Optional[float] = None
        self.started: Optional[float] = None
        self.completed: Optional[float] = None
        self.received: Optional[float] = None
        self.status: Optional[str] = None
        self.stdout = ""
        self.stderr = ""
        self.error: Optional[KernelError] = None
        self.resubmitted: Optional[str] = None
        self.execute_result: Any = None
        # () -> (value, data): the heavy fields, read only when asked for
        self.load: Callable[[], Tuple[Any, Dict[str, Any]]] = lambda: (None, {})


class Entry:
    """One task in the in-memory database."""

    __slots__ = ("record", "queue", "call", "fname", "client_uuid", "data", "resubmitted", "size", "result")

    def __init__(
        self, record: TaskRecord, queue: str, call: Union[bytes, Call, None], fname: str, client_uuid: str
    ) -> None:
        self.record = record
        self.queue = queue
        self.call = call
        self.fname = fname
        self.client_uuid = client_uuid
        self.data: Optional[Dict[str, Any]] = None  # set when the task finishes
        self.resubmitted: Optional[str] = None
        self.size = 0
        # A task whose value or data came through shared memory (``record.pinned``): its
        # AsyncResult, weakly; `record` is then a copy without the value (see `unpinned`).
        self.result: Optional[weakref.ref[AsyncResult]] = None

    def released(self) -> bool:
        """Whether this is a pinned task whose AsyncResult is gone (its value with it)."""
        return self.result is not None and self.result() is None

    def full_record(self) -> TaskRecord:
        """The task's record with its value: for a pinned task, its AsyncResult's while that
        lives, then a copy failed with a RemoteError (ename ``LookupError``) saying why."""
        if self.result is None:
            return self.record
        result = self.result()
        if result is not None:
            return result.records[self.record.index]
        gone = copy.copy(self.record)
        gone.status, gone.error = (
            "error",
            RemoteError(
                "LookupError",
                f"the value and data of task {gone.msg_id} came through shared memory and went with their "
                "AsyncResult (the task database keeps no engine's pages alive): keep the AsyncResult, or make "
                "the Client with db=path, which keeps a copy",
                "",
            ),
        )
        return gone

    def value(self) -> Any:
        record = self.full_record()
        return record.error if record.error is not None else record.value

    def live_data(self) -> Dict[str, Any]:
        """The task's published data: final once done, else what its AsyncResult holds now
        (for a pinned task, nothing once its AsyncResult is gone)."""
        if self.data is not None:
            return self.data
        record = self.record
        result = (self.result() if self.result is not None else None) or record.result
        if result is None:
            return {}
        slots = result.data_slots()
        return slots[record.index] if record.index < len(slots) else {}

    def flat(self) -> Flat:
        r = self.record
        flat = Flat(r.msg_id, self.client_uuid, self.queue, self.fname)
        flat.engine_id = r.engine_id if r.engine_id >= 0 else None
        flat.submitted, flat.started, flat.completed, flat.received = r.submitted, r.started, r.completed, r.received
        if r.done:
            flat.status = r.status
            flat.stdout, flat.stderr = r.stdout, r.stderr
            flat.error = r.error
            flat.execute_result = getattr(r.value, "execute_result", None)
        else:
            flat.stdout, flat.stderr = r.stdout, r.stderr
        flat.resubmitted = self.resubmitted
        flat.load = lambda: (self.value(), self.live_data())
        return flat


class TaskDB:
    """The client's task records, in memory, bounded (see the module docstring)."""

    def __init__(
        self,
        client_uuid: str,
        record_limit: int = RECORD_LIMIT,
        size_limit: int = SIZE_LIMIT,
        cull_fraction: float = CULL_FRACTION,
    ) -> None:
        if record_limit < 1 or size_limit < 0 or not 0 < cull_fraction <= 1:
            raise ValueError(
                f"need record_limit >= 1, size_limit >= 0 and 0 < cull_fraction <= 1, "
                f"got {record_limit}, {size_limit}, {cull_fraction}"
            )
        self.client_uuid = client_uuid
        self.record_limit = record_limit
        self.size_limit = size_limit
        self.cull_fraction = cull_fraction
        self.lock = threading.Lock()
        # In submission order: a pending task's TaskRecord, replaced by its Entry once it finished
        # (a pending task costs the garbage collector no object of this database's).
        self._entries: Dict[str, Union[TaskRecord, Entry]] = {}
        self._kept: Dict[str, Union[bytes, Call, None]] = {}  # a pending task's call
        self._balanced: Set[str] = set()  # the pending tasks of the "task" queue
        self._resub: Dict[str, str] = {}  # pending tasks resubmitted: their new msg_id
        # (record, fname, data) of tasks finished and not yet filed: appended by the completing
        # thread, emptied under `lock` by `_file_finished`
        self._done: Deque[Tuple[TaskRecord, str, Optional[Dict[str, Any]], Optional[weakref.ref[AsyncResult]]]] = (
            collections.deque()
        )
        self._finished: Dict[str, None] = {}  # the finished ones, in the order they finished
        self._bytes = 0  # estimated size of the finished entries
        self.sink: Any = None  # a sqlitedb.SQLiteStore, told the same events (set before any task)

    # -- the task path: a few dict writes ---------------------------------------------------
    def add(self, record: TaskRecord, queue: str, call: Union[bytes, Call, None], fname: str) -> None:
        """A task was submitted (its record is made, not yet sent).  `call` is what ``resubmit``
        sends again: its pickle (bytes: no object for the garbage collector to track), or the
        ``(f, args, kwargs)`` whose arguments travelled in shared memory."""
        # Dict and set writes, each atomic under the GIL: no lock on the submitting thread's path
        # (readers copy `_entries` in one C call; only `lock` holders change an existing key).
        msg_id = record.msg_id
        self._kept[msg_id] = call
        if queue == "task":
            self._balanced.add(msg_id)
        self._entries[msg_id] = record
        if self._done:
            self._file_finished()
        if self.sink is not None:
            self.sink.added(record.msg_id, self.client_uuid, queue, fname, record.submitted)

    def finished(self, record: TaskRecord, result: Optional[AsyncResult]) -> None:
        """The ledger completed `record`, a task of `result` (None if it was dropped): one deque
        append here (the completing thread is the collector); the entry is filed by the next
        submission or reader (`_file_finished`)."""
        data: Optional[Dict[str, Any]] = result.data_slots()[record.index] if result is not None else {}
        fname = result.fname if result is not None else "unknown"
        if self.sink is not None:
            self.sink.finished(record, data)
        ref = None
        if record.pinned and result is not None:  # keep no engine page alive: see Entry.result
            stub, ref, data = unpinned(record), weakref.ref(result), None
            with self.lock:  # the pending record holds the value: swapped for the stub at once
                if self._entries.get(record.msg_id) is record:
                    self._entries[record.msg_id] = stub
            record = stub
        self._done.append((record, fname, data, ref))

    def _file_finished(self) -> None:
        """File the tasks finished since last time: entries, sizes, and the culls they call for."""
        if not self._done:
            return
        with self.lock:
            done = self._done
            while done:
                record, fname, data, ref = done.popleft()
                msg_id = record.msg_id
                if self._entries.get(msg_id) is not record:
                    continue
                entry = Entry(record, "task" if msg_id in self._balanced else "mux", self._kept.pop(msg_id, None),
                              fname, self.client_uuid)  # fmt: skip
                entry.resubmitted = self._resub.pop(msg_id, None)
                self._balanced.discard(msg_id)
                self._entries[msg_id] = entry
                entry.data = data
                entry.result = ref
                size = entry.size = _entry_size(entry)
                self._finished[msg_id] = None
                self._bytes += size
                if len(self._entries) > self.record_limit:
                    self._drop_oldest(max(1, int(self.cull_fraction * self.record_limit)), None)
                if self._bytes > self.size_limit:
                    self._drop_oldest(len(self._finished), self.size_limit * (1 - self.cull_fraction))

    def _drop_oldest(self, n: int, down_to: Optional[float]) -> None:
        """Drop up to `n` of the oldest finished entries (stopping once `_bytes` <= `down_to`)."""
        for msg_id in list(itertools.islice(self._finished, n)):
            if down_to is not None and self._bytes <= down_to:
                return
            del self._finished[msg_id]
            self._bytes -= self._entries.pop(msg_id).size  # type: ignore[union-attr]  # finished: an Entry

    def resubmitted(self, old: str, new: str) -> None:
        self._file_finished()
        with self.lock:
            entry = self._entries.get(old)
            if isinstance(entry, Entry):
                entry.resubmitted = new
            elif entry is not None:
                self._resub[old] = new
        if self.sink is not None:
            self.sink.resubmitted(old, new)

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        self._file_finished()
        return len(self._entries)

    @property
    def size(self) -> int:
        """The estimated bytes of the finished entries kept."""
        self._file_finished()
        return self._bytes

    def _pending_entry(self, record: TaskRecord, result: Optional[AsyncResult]) -> Entry:
        """An Entry for a task still pending (made when asked for, or when it finishes)."""
        msg_id = record.msg_id
        queue = "task" if msg_id in self._balanced else "mux"
        fname = result.fname if result is not None else "unknown"
        entry = Entry(record, queue, self._kept.get(msg_id), fname, self.client_uuid)
        entry.resubmitted = self._resub.get(msg_id)
        return entry

    def entry(self, msg_id: str) -> Optional[Entry]:
        self._file_finished()
        found = self._entries.get(msg_id)
        if found is None or isinstance(found, Entry):
            return found
        return self._pending_entry(found, found.result)

    def entries(self) -> List[Entry]:
        self._file_finished()
        found = list(self._entries.values())  # one C call: atomic against add's insert
        return [e if isinstance(e, Entry) else self._pending_entry(e, e.result) for e in found]

    def history(self) -> List[str]:
        """Every msg_id kept, in submission order."""
        self._file_finished()
        return list(self._entries)

    def find(self, query: Dict[str, Any], keys: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        return find(query, (e.flat() for e in self.entries()), keys)

    # -- forgetting -------------------------------------------------------------------------
    def drop(self, msg_ids: Iterable[str]) -> None:
        """Forget these finished tasks (pending ones are kept, as ipyparallel's Hub keeps them)."""
        self._file_finished()
        with self.lock:
            for msg_id in msg_ids:
                if msg_id in self._finished:
                    del self._finished[msg_id]
                    self._bytes -= self._entries.pop(msg_id).size  # type: ignore[union-attr]

    def finished_ids(self, engine_ids: Optional[Iterable[int]] = None) -> List[str]:
        """The finished tasks (of these engines, if given)."""
        self._file_finished()
        with self.lock:
            if engine_ids is None:
                return list(self._finished)
            wanted = set(engine_ids)
            return [m for m in self._finished if self._entries[m].record.engine_id in wanted]  # type: ignore[union-attr]


def unpinned(record: TaskRecord) -> TaskRecord:
    """A copy of a finished `record` without its value: what the database keeps of a task whose
    value or data came through shared memory, so that the engine's pages go with the AsyncResult."""
    stub = copy.copy(record)
    stub.value, stub.result, stub.parts = None, None, ()
    return stub


def _entry_size(entry: Entry) -> int:
    """`approx_size` of what the entry keeps alive, with the common small cases inline (this
    runs once per task, in the thread that completes it)."""
    record = entry.record
    value = record.value
    size = 0 if type(value) in _FLAT_TYPES else approx_size(value)
    if entry.data:
        size += approx_size(entry.data)
    if record.output:
        size += sum([len(text) for _, text in record.output])
    call = entry.call
    if isinstance(call, bytes):
        size += len(call)
    elif call is not None:
        for arg in call[1]:
            if type(arg) not in _FLAT_TYPES:
                size += approx_size(arg)
        if call[2]:
            size += approx_size(call[2])
    return size


_FLAT_TYPES = frozenset({int, float, bool, type(None), complex})
_SAMPLE = 32


def approx_size(obj: Any, depth: int = 3) -> int:
    """A cheap estimate of the bytes `obj` holds: exact for bytes, strings and arrays,
    sampled for long containers; 0 for small scalars."""
    t = type(obj)
    if t in _FLAT_TYPES:
        return 0
    if t is bytes or t is bytearray or t is str:
        return len(obj)
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if depth <= 0:
        return 64
    if t is dict:
        values: Sequence[Any] = list(itertools.islice(obj.values(), _SAMPLE))
        n = len(obj)
    elif t in (list, tuple, set, frozenset):
        values = list(itertools.islice(obj, _SAMPLE))
        n = len(obj)
    else:
        return 64
    if not values:
        return 0
    sampled = sum(approx_size(v, depth - 1) for v in values) + 8 * len(values)
    return sampled * n // len(values)


# -- rows in ipyparallel's shape ------------------------------------------------------------------
def to_datetime(t: Optional[float]) -> Optional[datetime]:
    """A timestamp as ipyparallel's Hub gives it: a timezone-aware local datetime."""
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).astimezone()


def error_content(error: KernelError) -> Dict[str, Any]:
    return {
        "status": "error",
        "ename": error.ename,
        "evalue": error.evalue,
        "traceback": error.traceback.splitlines(),
        "engine_info": dict(error.engine_info),
    }


def _engine_uuid(flat: Flat) -> Optional[str]:
    return None if flat.engine_id is None else f"{flat.client_uuid}-engine-{flat.engine_id}"


def _value(flat: Flat, key: str) -> Any:
    """One field of a row (computed alone, so that a query reads only what it tests)."""
    if key in ("msg_id", "client_uuid", "queue", "engine_id", "status", "stdout", "stderr", "resubmitted"):
        return getattr(flat, key)
    if key in ("submitted", "started", "completed", "received"):
        return to_datetime(getattr(flat, key))
    if key == "engine_uuid":
        return _engine_uuid(flat)
    if key == "header":
        return {"msg_id": flat.msg_id, "msg_type": "apply_request", "session": flat.client_uuid,
                "date": to_datetime(flat.submitted)}  # fmt: skip
    if key == "content":
        return {}
    if key == "metadata":
        return {"label": None}
    if key in ("execute_input", "label"):
        return None
    if key == "execute_result":
        return flat.execute_result
    done = flat.status is not None
    if key == "error":
        return error_content(flat.error) if flat.error is not None else None
    if key == "result_header":
        if not done:
            return None
        return {"msg_id": flat.msg_id, "msg_type": "apply_reply", "session": flat.client_uuid,
                "date": to_datetime(flat.completed)}  # fmt: skip
    if key == "result_content":
        if not done:
            return None
        return error_content(flat.error) if flat.error is not None else {"status": "ok"}
    if key == "result_metadata":
        if not done:
            return None
        return {"started": to_datetime(flat.started), "status": flat.status, "engine": _engine_uuid(flat),
                "dependencies_met": True}  # fmt: skip
    if key == "result":
        return flat.load()[0]
    if key == "data":
        return dict(flat.load()[1])
    return None


def row(flat: Flat, keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The record as ``db_query`` returns it: `keys` (all but `EXTRA_KEYS` by default), msg_id always."""
    wanted = DEFAULT_KEYS if keys is None else ("msg_id", *[k for k in keys if k != "msg_id"])
    if keys is not None and ("result" in wanted or "data" in wanted):
        value, data = flat.load()
        out = {k: _value(flat, k) for k in wanted if k not in ("result", "data")}
        if "result" in wanted:
            out["result"] = value
        if "data" in wanted:
            out["data"] = dict(data)
        return {k: out[k] for k in wanted}
    return {k: _value(flat, k) for k in wanted}


def check_keys(keys: Optional[Sequence[str]]) -> Optional[List[str]]:
    if keys is None:
        return None
    if isinstance(keys, str):
        keys = [keys]
    unknown = [k for k in keys if k not in ALL_KEYS]
    if unknown:
        raise KeyError(f"unknown task record keys {unknown}; known: {sorted(ALL_KEYS)}")
    return list(keys)


# -- the query engine -----------------------------------------------------------------------------
def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(value: Any, operand: Any) -> bool:
        if value is None or operand is None:
            return False
        return test(value, operand)

    return compare


OPERATORS: Dict[str, Callable[[Any, Any], bool]] = {
    "$lt": _ordered(lambda a, b: a < b),
    "$gt": _ordered(lambda a, b: a > b),
    "$lte": _ordered(lambda a, b: a <= b),
    "$le": _ordered(lambda a, b: a <= b),
    "$gte": _ordered(lambda a, b: a >= b),
    "$ge": _ordered(lambda a, b: a >= b),
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$in": lambda a, b: a in b,
    "$nin": lambda a, b: a not in b,
    "$exists": lambda a, b: (a is not None) == bool(b),
}


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.astimezone()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_aware(v) for v in value]
    return value


Test = List[Tuple[str, List[Tuple[Callable[[Any, Any], bool], Any]]]]


def compile_query(query: Dict[str, Any]) -> Test:
    """`query` as (key, [(operator, operand)]) pairs; a clear error for what is not a query."""
    if not isinstance(query, dict):
        raise TypeError(f"a task query is a dict like {{'msg_id': {{'$in': ids}}}}, got {type(query).__name__}")
    tests: Test = []
    for key, spec in query.items():
        if isinstance(spec, dict):
            ops = []
            for op, operand in spec.items():
                if op not in OPERATORS:
                    raise ValueError(f"unknown query operator {op!r} for {key!r}; known: {sorted(OPERATORS)}")
                if op in ("$in", "$nin") and not isinstance(operand, (list, tuple, set, frozenset)):
                    raise TypeError(f"{op} for {key!r} needs a list, got {type(operand).__name__}")
                ops.append((OPERATORS[op], _aware(operand)))
            tests.append((key, ops))
        else:
            tests.append((key, [(OPERATORS["$eq"], _aware(spec))]))
    return tests


def matches(tests: Test, flat: Flat) -> bool:
    for key, ops in tests:
        value = _value(flat, key)
        for op, operand in ops:
            if not op(value, operand):
                return False
    return True


def find(query: Dict[str, Any], flats: Iterable[Flat], keys: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """The rows of `flats` that match `query` (in their order), with `keys`."""
    tests = compile_query(query)
    keys = check_keys(keys)
    return [row(f, keys) for f in flats if matches(tests, f)]


__all__ = ["TaskDB", "Flat", "find", "row", "approx_size", "RECORD_LIMIT", "SIZE_LIMIT", "CULL_FRACTION"]
