"""The task database on disk: ``Client(db="run.sqlite")`` writes every task's record to SQLite.

One thread (``localpar-taskdb-<cluster>``) owns the writing connection and is the only
writer.  The task path only puts small tuples on its queue (``added`` at submission,
``finished`` at completion: a ``queue.Queue.put`` each); the thread blocks in
``Queue.get`` (a put always wakes it: no wake can be lost), takes whatever else is queued
(up to `BATCH` items), applies it in one transaction and commits.  Values and published
data are pickled here, with cloudpickle, into BLOBs; errors are kept as their fields and
rebuilt as the same localpar error class.  ``close`` queues a sentinel behind everything
else and joins the thread, then closes the reading connection.

Readers (any thread) use a second connection, under `_read_lock`, and first wait for what
was queued before them to be committed (``flush``: an Event the writer sets after the
commit), so ``hub_history()`` right after ``ar.get()`` lists the task.  The file is in WAL
mode with ``synchronous=NORMAL``: a committed record survives the client's process being
killed (SIGKILL), so a new ``Client(db=...)`` answers for the old run; what was still in
the queue when it died (the last moments' records) is lost.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple

import cloudpickle

from .. import errors as errors_module
from ..errors import KernelError, RemoteError
from .taskdb import Flat, find

if TYPE_CHECKING:
    from .handles import TaskRecord

_logger = logging.getLogger("localpar")

BATCH = 1000
"""At most this many queued events per transaction."""
FLUSH_TIMEOUT = 60.0
"""Seconds a reader waits for the writer to commit what was queued before it."""
SCHEMA_VERSION = 1

_COLUMNS = (
    "msg_id", "client_uuid", "queue", "fname", "engine_id", "submitted", "started", "completed",
    "received", "status", "stdout", "stderr", "error", "resubmitted", "execute_result",
)  # fmt: skip
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS tasks (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT UNIQUE NOT NULL, client_uuid TEXT, queue TEXT, fname TEXT, engine_id INTEGER,
    submitted REAL, started REAL, completed REAL, received REAL, status TEXT,
    stdout TEXT, stderr TEXT, error TEXT, resubmitted TEXT, execute_result TEXT,
    result BLOB, data BLOB, blob_error TEXT
);
PRAGMA user_version = {SCHEMA_VERSION};
"""

_STOP = ("stop",)


class SQLiteStore:
    """The task records of every run that used this file (see the module docstring)."""

    def __init__(self, path: str, cluster_id: str) -> None:
        self.path = str(path)
        self.error: Optional[str] = None  # why the writer could not write (then it drops events)
        try:
            self._reader = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            version = self._reader.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in self._reader.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and (version != SCHEMA_VERSION or "tasks" not in tables):
                self._reader.close()
                raise ValueError(
                    f"db={self.path!r} is an SQLite file but not a localpar task database "
                    f"(tables {sorted(tables)}, user_version {version})"
                )
            self._reader.execute("PRAGMA journal_mode=WAL")
            self._reader.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ValueError(f"db={self.path!r}: cannot use it as a task database: {exc}") from None
        self._read_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"localpar-taskdb-{cluster_id}", daemon=True)
        self._thread.start()

    # -- events (any thread; a put each) -------------------------------------------------------
    def added(self, msg_id: str, client_uuid: str, queue_name: str, fname: str, submitted: float) -> None:
        self._queue.put(("add", msg_id, client_uuid, queue_name, fname, submitted))

    def finished(self, record: TaskRecord, data: Dict[str, Any]) -> None:
        self._queue.put(("done", record, data))

    def resubmitted(self, old: str, new: str) -> None:
        self._queue.put(("resub", old, new))

    def drop(self, msg_ids: Optional[Iterable[str]]) -> None:
        """Delete these finished records (None: every finished record); committed before this returns."""
        self._queue.put(("drop", None if msg_ids is None else list(msg_ids)))
        self.flush()

    def flush(self) -> None:
        """Return once everything queued before this call is committed."""
        if self._closed or not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(("flush", done))
        if not done.wait(FLUSH_TIMEOUT):
            raise TimeoutError(f"the task database writer did not commit within {FLUSH_TIMEOUT} s ({self.path})")

    def close(self) -> None:
        """Write what is queued, stop the writer thread and close the file; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        with self._read_lock:
            self._reader.close()

    # -- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = self._apply(conn, batch)
                for item in batch:
                    if item[0] == "flush":
                        item[1].set()
                if stop:
                    return
        finally:
            conn.close()

    def _apply(self, conn: sqlite3.Connection, batch: List[Tuple[Any, ...]]) -> bool:
        stop = False
        try:
            with conn:  # one transaction
                for item in batch:
                    kind = item[0]
                    if kind == "add":
                        conn.execute(
                            "INSERT OR IGNORE INTO tasks (msg_id, client_uuid, queue, fname, submitted) "
                            "VALUES (?, ?, ?, ?, ?)",
                            item[1:],
                        )
                    elif kind == "done":
                        conn.execute(_UPDATE_DONE, _done_row(item[1], item[2]))
                    elif kind == "resub":
                        conn.execute("UPDATE tasks SET resubmitted = ? WHERE msg_id = ?", (item[2], item[1]))
                    elif kind == "drop":
                        if item[1] is None:
                            conn.execute("DELETE FROM tasks WHERE status IS NOT NULL")
                        else:
                            conn.executemany(
                                "DELETE FROM tasks WHERE msg_id = ? AND status IS NOT NULL", [(m,) for m in item[1]]
                            )
                    elif kind == "stop":
                        stop = True
        except Exception as exc:  # a full disk must not stop the cluster: say so, keep serving
            self.error = f"{type(exc).__name__}: {exc}"
            _logger.error("localpar: the task database %s could not be written: %s", self.path, self.error)
        return stop

    # -- reading (any thread) ---------------------------------------------------------------------
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
        self.flush()
        with self._read_lock:
            return self._reader.execute(sql, args).fetchall()

    def history(self) -> List[str]:
        """Every msg_id in the file, in submission order (all runs)."""
        return [r[0] for r in self._rows("SELECT msg_id FROM tasks ORDER BY n")]

    def flats(self, msg_ids: Optional[Sequence[str]] = None) -> List[Flat]:
        """The records (of `msg_ids`, in that order, unknown ones left out), in submission order."""
        cols = ", ".join(_COLUMNS)
        if msg_ids is None:
            rows = self._rows(f"SELECT {cols} FROM tasks ORDER BY n")
        else:
            rows = []
            ids = list(msg_ids)
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ", ".join("?" * len(chunk))
                rows += self._rows(f"SELECT {cols} FROM tasks WHERE msg_id IN ({marks})", chunk)
            order = {m: i for i, m in enumerate(ids)}
            rows.sort(key=lambda r: order[r[0]])
        return [self._flat(r) for r in rows]

    def find(self, query: Dict[str, Any], keys: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        return find(query, self.flats(), keys)

    def _flat(self, r: Tuple[Any, ...]) -> Flat:
        flat = Flat(r[0], r[1], r[2], r[3] or "unknown")
        flat.engine_id, flat.submitted, flat.started, flat.completed, flat.received, flat.status = r[4:10]
        flat.stdout, flat.stderr = r[10] or "", r[11] or ""
        flat.error = None if r[12] is None else _load_error(r[12])
        flat.resubmitted = r[13]
        flat.execute_result = None if r[14] is None else json.loads(r[14])
        msg_id = r[0]
        flat.load = lambda: self._load_blobs(msg_id, flat.error)
        return flat

    def _load_blobs(self, msg_id: str, error: Optional[KernelError]) -> Tuple[Any, Dict[str, Any]]:
        with self._read_lock:
            sql = "SELECT result, data, blob_error FROM tasks WHERE msg_id = ?"
            got = self._reader.execute(sql, (msg_id,)).fetchone()
        if got is None:
            return error, {}
        result, data, blob_error = got
        value: Any = error
        if error is None:
            value = None
            if blob_error is not None:
                value = RemoteError("SerializationError", f"the value of {msg_id} was not stored: {blob_error}", "")
            elif result is not None:
                value = _loads(result, msg_id, "value")
        return value, ({} if data is None else _loads(data, msg_id, "data") or {})


_UPDATE_DONE = (
    "UPDATE tasks SET engine_id = ?, started = ?, completed = ?, received = ?, status = ?, stdout = ?, "
    "stderr = ?, error = ?, execute_result = ?, result = ?, data = ?, blob_error = ? WHERE msg_id = ?"
)


def _done_row(record: TaskRecord, data: Dict[str, Any]) -> Tuple[Any, ...]:
    """The UPDATE's arguments for a finished record (read in the writer thread: done records
    are not written any more)."""
    blob_error = None
    result = None
    if record.error is None:
        try:
            result = cloudpickle.dumps(record.value, protocol=5)
        except Exception as exc:
            blob_error = f"{type(exc).__name__}: {exc}"
    try:
        data_blob: Optional[bytes] = cloudpickle.dumps(data, protocol=5) if data else None
    except Exception as exc:
        data_blob, blob_error = None, blob_error or f"data: {type(exc).__name__}: {exc}"
    execute_result = getattr(record.value, "execute_result", None)
    return (
        record.engine_id if record.engine_id >= 0 else None,
        record.started, record.completed, record.received, record.status or "error",
        record.stdout, record.stderr,
        None if record.error is None else _dump_error(record.error),
        None if execute_result is None else json.dumps(execute_result, default=str),
        result, data_blob, blob_error, record.msg_id,
    )  # fmt: skip


def _dump_error(error: KernelError) -> str:
    extra = {k: v for k, v in vars(error).items() if k not in ("ename", "evalue", "traceback", "engine_info")}
    extra = {k: v for k, v in extra.items() if isinstance(v, (str, int, float, bool, type(None)))}
    info = {k: v for k, v in error.engine_info.items() if isinstance(v, (str, int, float, bool, type(None)))}
    return json.dumps({"type": type(error).__name__, "ename": error.ename, "evalue": error.evalue,
                       "traceback": error.traceback, "engine_info": info, "extra": extra})  # fmt: skip


def _load_error(text: str) -> KernelError:
    """The error as it was raised: the same localpar class, its fields and plain attributes."""
    d = json.loads(text)
    cls = getattr(errors_module, d.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, KernelError)) or d.get("type") == "CompositeError":
        cls = RemoteError
    error = cls.__new__(cls)
    KernelError.__init__(error, d["ename"], d["evalue"], d["traceback"], d["engine_info"])
    for key, value in d.get("extra", {}).items():
        setattr(error, key, value)
    return error


def _loads(blob: bytes, msg_id: str, what: str) -> Any:
    try:
        return cloudpickle.loads(blob)
    except Exception as exc:
        return RemoteError("SerializationError", f"the stored {what} of {msg_id} cannot be loaded: {exc}", "")
