"""ipyparallel's Hub calls on the Client: history, get_result, result_status, db_query,
hub_history, resubmit, queue_status, purge_*.

The records live in the client's task database (``taskdb.TaskDB``, in memory and bounded;
with ``Client(db=path)`` also in SQLite, ``sqlitedb.SQLiteStore``, which then answers
``db_query`` and ``hub_history`` for every run that used the file).  `HubMixin` is the
thin layer that turns ipyparallel's arguments (msg_ids, indices into ``history``,
AsyncResults) into lookups there; it keeps no state of its own besides ``history``.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import KernelError, RemoteError
from .asyncresult import AsyncResult, PartResult
from .handles import TaskRecord
from .hubresult import AsyncHubResult
from .taskdb import Flat, TaskDB

if TYPE_CHECKING:
    from .balancer import Balancer
    from .ledger import Ledger
    from .results import ResultIndex
    from .sqlitedb import SQLiteStore

    Call = Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]

Jobs = Any  # a msg_id, an index into history, an AsyncResult, or a list of them


def _no_such(msg_ids: Sequence[str]) -> RemoteError:
    """The Hub's error for unknown ids (ipyparallel raises a RemoteError whose ename is KeyError)."""
    what = f"No such message: {msg_ids[0]}" if len(msg_ids) == 1 else f"No such msg(s): {list(msg_ids)}"
    return RemoteError("KeyError", what, "")


class HubMixin:
    """The Hub half of `Client` (see the module docstring)."""

    history: List[str]
    """The msg_ids of the tasks this client submitted, in order (as ipyparallel's ``rc.history``)."""
    block: bool

    if TYPE_CHECKING:  # defined by Client
        cluster_id: str
        _taskdb: TaskDB
        _store: Optional[SQLiteStore]
        _results: ResultIndex
        _ledger: Ledger
        _balancer: Balancer

        @property
        def ids(self) -> List[int]: ...

        def _check_open(self) -> None: ...

        @property
        def owner(self) -> Any: ...

        def _encode(
            self, f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]
        ) -> Tuple[bytes, list]: ...

        def _new_record(
            self,
            ar: AsyncResult,
            engine_id: int,
            call: Union[bytes, Call, None] = None,
            queue: str = "mux",
            history: bool = True,
        ) -> TaskRecord: ...

        def resolve_targets(self, targets: Any) -> List[int]: ...

    def _check_attached(self) -> None:
        """An attached Client (``Client(profile=...)``, see ``attach``) answers while it and its
        cluster are open; the owner answers from its records after ``close()`` too."""
        if self.owner is not self:
            self._check_open()

    @property
    def task_db(self) -> TaskDB:
        """The in-memory task database (its `record_limit`, `size_limit` and `cull_fraction` may be set)."""
        return self._taskdb

    # -- naming tasks -------------------------------------------------------------------------
    def _msg_ids_from_jobs(self, jobs: Jobs) -> List[str]:
        if not isinstance(jobs, (list, tuple, set, types.GeneratorType)):
            jobs = [jobs]
        msg_ids: List[str] = []
        for job in jobs:
            if isinstance(job, bool):
                raise TypeError(f"Expected msg_id, int, or AsyncResult, got {job!r}")
            if isinstance(job, int):
                msg_ids.append(self.history[job])
            elif isinstance(job, str):
                msg_ids.append(job)
            elif isinstance(job, AsyncResult):
                msg_ids.extend(job.msg_ids)
            else:
                raise TypeError(f"Expected msg_id, int, or AsyncResult, got {job!r}")
        return msg_ids

    def _hub_record(self, msg_id: str) -> Optional[Tuple[TaskRecord, Callable[[], Dict[str, Any]]]]:
        """The record of `msg_id` and its data reader: from memory, else the SQLite file; None if unknown."""
        entry = self._taskdb.entry(msg_id)
        if entry is not None and not (entry.released() and self._store is not None):
            return entry.full_record(), entry.live_data  # else: the SQLite file keeps a copy
        flats = self._store.flats([msg_id]) if self._store is not None else []
        return self._record_from(flats[0]) if flats else None

    def _hub_record_or_error(self, msg_id: str) -> Tuple[TaskRecord, Callable[[], Dict[str, Any]]]:
        """As `_hub_record`; an unknown id gets a record failed with the Hub's KeyError."""
        found = self._hub_record(msg_id)
        if found is not None:
            return found
        record = TaskRecord(0, msg_id, -1, None, 0)  # type: ignore[arg-type]
        record.status, record.error, record.done = "error", _no_such([msg_id]), True
        return record, dict

    def _record_from(self, flat: Flat) -> Tuple[TaskRecord, Callable[[], Dict[str, Any]]]:
        """A done TaskRecord rebuilt from a stored row (a task of an earlier run, or culled)."""
        record = TaskRecord(0, flat.msg_id, -1 if flat.engine_id is None else flat.engine_id, None, 0)  # type: ignore[arg-type]
        record.submitted = flat.submitted or 0.0
        record.started, record.completed, record.received = flat.started, flat.completed, flat.received
        record.output = [("stdout", flat.stdout), ("stderr", flat.stderr)]
        record.done = True
        if flat.status is None:  # never finished: its client ended first
            record.status = "error"
            record.error = RemoteError(
                "TaskLost", f"task {flat.msg_id} was pending when its client ({flat.client_uuid}) ended", ""
            )
            return record, dict
        value, data = flat.load()
        record.status = flat.status
        if isinstance(value, KernelError) and (flat.error is not None or flat.status != "ok"):
            record.error = value
        else:
            record.value = value
        return record, lambda: data

    # -- ipyparallel's calls ------------------------------------------------------------------
    def get_result(self, indices_or_msg_ids: Jobs = None, block: Optional[bool] = None, owner: bool = True) -> Any:
        """The result of tasks by msg_id, index into `history` or AsyncResult, as ipyparallel:
        a plain AsyncResult while they all run in this client, else an `AsyncHubResult` over
        the task database (one value for one id, a list for a list).  With ``owner=False`` that
        result is also kept in ``rc.results`` until ``purge_local_results``, and a later
        ``get_result`` of those ids is a plain AsyncResult over it, as ipyparallel's."""
        self._check_attached()
        block = self.block if block is None else block
        jobs: Any = -1 if indices_or_msg_ids is None else indices_or_msg_ids
        single = not isinstance(jobs, (list, tuple, set, types.GeneratorType))
        given: List[Any] = [jobs] if single else list(jobs)
        if given and all(isinstance(j, AsyncResult) for j in given):
            ar: AsyncResult = AsyncResult.join(*given)
        else:
            msg_ids = self._msg_ids_from_jobs(given)
            live = self._live_parts(msg_ids) if owner else None
            kept = self._kept_result(msg_ids, single) if live is None else None
            if live is not None:
                ar = live[0] if single and len(live) == 1 else AsyncResult.join(*live)
            elif kept is not None:
                ar = kept
            else:
                pairs = [self._hub_record_or_error(m) for m in msg_ids]
                records, readers = [p[0] for p in pairs], [p[1] for p in pairs]
                ar = AsyncHubResult.over(self, records, readers, single and len(msg_ids) == 1)  # type: ignore[arg-type]
                if not owner:
                    for msg_id in msg_ids:
                        self._results.hold(msg_id, ar)
        if block:
            ar.wait()
        return ar

    def _kept_result(self, msg_ids: List[str], single: bool) -> Optional[AsyncResult]:
        """A plain AsyncResult over the results ``get_result(owner=False)`` kept for all of
        `msg_ids`, or None if one is not kept."""
        held = [self._results.held(m) for m in msg_ids]
        if not msg_ids or any(h is None for h in held):
            return None
        records, data = [], []
        for msg_id, ar in zip(msg_ids, held):
            assert ar is not None
            i = [r.msg_id for r in ar.records].index(msg_id)
            records.append(ar.records[i])
            data.append(ar.data_slots()[i])
        source = held[0]
        assert source is not None
        return PartResult(source, records, data, single and len(msg_ids) == 1)  # type: ignore[arg-type]

    def _live_parts(self, msg_ids: List[str]) -> Optional[List[AsyncResult]]:
        """One-task AsyncResults of these tasks if each still runs here, else None."""
        parts: List[AsyncResult] = []
        for msg_id in msg_ids:
            entry = self._taskdb.entry(msg_id)
            if entry is None or entry.record.done:
                return None
            try:
                ar = self._results[msg_id]
            except KeyError:
                return None
            parts.append(ar.split()[entry.record.index])
        return parts or None

    def result_status(self, msg_ids: Jobs, status_only: bool = True) -> Dict[str, Any]:
        """``{'status': 'ok', 'pending': [...], 'completed': [...]}``, with each completed
        result (or error) keyed by its msg_id if not `status_only`, as ipyparallel.  Unknown
        ids raise the Hub's RemoteError (ename ``KeyError``); a single failed id raises its error."""
        self._check_attached()
        ids = self._msg_ids_from_jobs(msg_ids)
        found = [self._hub_record(m) for m in ids]
        unknown = [m for m, f in zip(ids, found) if f is None]
        if unknown:
            raise _no_such(unknown)
        pairs = [f for f in found if f is not None]
        content: Dict[str, Any] = {"status": "ok", "pending": [], "completed": []}
        failures = []
        for msg_id, (record, _) in zip(ids, pairs):
            if not record.done:
                content["pending"].append(msg_id)
                continue
            content["completed"].append(msg_id)
            if not status_only:
                content[msg_id] = record.error if record.error is not None else record.value
                if record.error is not None:
                    failures.append(record.error)
        if len(ids) == 1 and failures:
            raise failures[0]
        return content

    def db_query(self, query: Dict[str, Any], keys: Optional[Union[str, Sequence[str]]] = None) -> List[Dict[str, Any]]:
        """The task records that match `query` (ipyparallel's Mongo-style dict: ``$in``, ``$nin``,
        ``$lt``, ``$gt``, ``$lte``/``$le``, ``$gte``/``$ge``, ``$eq``, ``$ne``, ``$exists``), in
        submission order, with `keys` (default: all but ``result`` and ``data``; msg_id always)."""
        self._check_attached()
        keys = [keys] if isinstance(keys, str) else keys
        if self._store is not None:
            return self._store.find(query, keys)
        return self._taskdb.find(query, keys)

    def hub_history(self) -> List[str]:
        """Every msg_id the task database holds, in submission order (with ``db=``: every run's)."""
        self._check_attached()
        if self._store is not None:
            return self._store.history()
        return self._taskdb.history()

    def resubmit(self, indices_or_msg_ids: Jobs = None, metadata: Any = None, block: Optional[bool] = None) -> Any:
        """Run tasks again, load-balanced, under new msg_ids (not added to `history`); returns an
        `AsyncHubResult` whose ``get()`` is a list, as ipyparallel's.  Tasks whose call is no
        longer kept (culled, or from an earlier run) raise the Hub's RemoteError (KeyError)."""
        block = self.block if block is None else block
        ids = self._msg_ids_from_jobs(-1 if indices_or_msg_ids is None else indices_or_msg_ids)
        entries = [self._taskdb.entry(m) for m in ids]
        missing = [m for m, e in zip(ids, entries) if e is None or e.call is None]
        if missing:
            raise _no_such(missing)
        self._check_open()
        ar = AsyncHubResult(self, "resubmit")  # type: ignore[arg-type]
        items: List[Tuple[TaskRecord, bytes, Optional[List[int]]]] = []
        for entry in entries:
            assert entry is not None and entry.call is not None
            kept = entry.call
            blob, segments = (kept, []) if isinstance(kept, bytes) else self._encode(*kept)
            if segments:
                ar.hold_segments(segments)
            record = self._new_record(ar, -1, entry.call, "task", history=False)
            items.append((record, blob, None))
        for msg_id, (record, _, _) in zip(ids, items):
            self._taskdb.resubmitted(msg_id, record.msg_id)
        self._balancer.submit(ar, items)
        if block:
            ar.wait()
        return ar

    def queue_status(self, targets: Any = "all", verbose: bool = False) -> Dict[Union[int, str], Any]:
        """As ipyparallel: ``{engine_id: {"queue": pending, "completed": done, "tasks": pending},
        "unassigned": tasks the load balancer still holds}``; lists of msg_ids with `verbose`
        (completed: those the task database still holds); one engine's dict for an int target."""
        if verbose:
            pending: Dict[int, List[str]] = {}
            for r in self._ledger.pending_records():
                pending.setdefault(r.engine_id, []).append(r.msg_id)
            status: Dict[Union[int, str], Any] = {}
            for i in self.ids:
                done = self._taskdb.finished_ids([i])
                status[i] = {"queue": pending.get(i, []), "completed": done, "tasks": pending.get(i, [])}
            status["unassigned"] = sorted(self._balancer.queued_msg_ids())
        else:
            status = {i: {"queue": n, "completed": d, "tasks": n} for i, (n, d) in self._ledger.counts().items()}
            status["unassigned"] = len(self._balancer.queued_msg_ids())
        if isinstance(targets, int):
            return status[targets]
        if targets not in (None, "all"):
            wanted = set(self.resolve_targets(targets))
            status = {k: v for k, v in status.items() if k == "unassigned" or k in wanted}
        return status

    @property
    def outstanding(self) -> set:
        """msg_ids of this client's tasks not yet finished (an attached Client's own, as each
        ipyparallel client's).  A pending task holds its AsyncResult, so `_results` has it."""
        pending = {r.msg_id for r in self._ledger.pending_records()}
        pending |= self._balancer.queued_msg_ids()
        return {m for m in pending if m in self._results}

    @property
    def results(self) -> Dict[str, Any]:
        """``{msg_id: result}`` of finished tasks, as in ipyparallel."""
        out: Dict[str, Any] = {}
        for ar in set(self._results.values()):
            for r in ar.records:
                if r.done:
                    out[r.msg_id] = r.error if r.error is not None else r.value
        return out

    @property
    def metadata(self) -> Dict[str, Any]:
        """``{msg_id: metadata}`` of finished tasks whose results the client holds (see `results`)."""
        out: Dict[str, Any] = {}
        for ar in set(self._results.values()):
            metas = ar.metadata
            for r, md in zip(ar.records, metas if isinstance(metas, list) else [metas]):
                if r.done:
                    out[r.msg_id] = md
        return out

    # -- forgetting ---------------------------------------------------------------------------
    def purge_local_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Forget finished results (``results``) kept by the client, as ipyparallel does:
        `jobs` (``'all'``, msg_ids, AsyncResults) and/or every result of `targets`.

        Raises ``ValueError`` if neither is given and ``RuntimeError`` if one is still running.
        """
        if not jobs and (targets is None or (not isinstance(targets, int) and not targets)):
            raise ValueError("Must specify at least one of `targets` and `jobs`")
        if jobs == "all":
            msg_ids = [m for m, _ in self._results.items()]
        else:
            if isinstance(jobs, (str, AsyncResult)):
                jobs = [jobs]
            msg_ids = [m for job in jobs for m in (job.msg_ids if isinstance(job, AsyncResult) else [job])]
        if not (targets is None or (not isinstance(targets, int) and not targets)):
            engines = set(self.resolve_targets(targets))
            msg_ids += [r.msg_id for _, ar in self._results.items() for r in ar.records if r.engine_id in engines]
        running = set(msg_ids) & self.outstanding
        if running:
            raise RuntimeError(f"Can't purge outstanding tasks: {sorted(running)}")
        for msg_id in msg_ids:
            self._results.pop(msg_id, None)

    def purge_hub_results(self, jobs: Jobs = (), targets: Any = ()) -> None:
        """Forget finished tasks in the task database: `jobs` (``'all'``, msg_ids, AsyncResults)
        and/or every finished task of `targets`; pending ones are kept, as ipyparallel's Hub does."""
        self._check_attached()
        no_targets = targets is None or (not isinstance(targets, int) and not targets)
        if not jobs and no_targets:
            raise ValueError("Must specify at least one of `targets` and `jobs`")
        if jobs == "all":
            self._taskdb.drop(self._taskdb.finished_ids())
            if self._store is not None:
                self._store.drop(None)
            return
        msg_ids = self._msg_ids_from_jobs(jobs) if jobs else []
        if not no_targets:
            engines = [targets] if isinstance(targets, int) else list(targets)
            msg_ids += self._taskdb.finished_ids(engines)
            if self._store is not None:
                query = {"client_uuid": self.cluster_id, "engine_id": {"$in": engines}, "status": {"$ne": None}}
                msg_ids += [r["msg_id"] for r in self._store.find(query, ["msg_id"])]
        self._taskdb.drop(msg_ids)
        if self._store is not None:
            self._store.drop(msg_ids)

    def purge_results(self, jobs: Jobs = (), targets: Any = ()) -> None:
        """`purge_local_results` and `purge_hub_results` with the same arguments, as ipyparallel."""
        self.purge_local_results(jobs=jobs, targets=targets)
        self.purge_hub_results(jobs=jobs, targets=targets)

    def purge_everything(self) -> None:
        """``purge_results('all')`` and an empty `history` (the views' histories stay), as ipyparallel."""
        self.purge_results("all")
        self.history = []
