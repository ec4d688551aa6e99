"""Client: starts a local cluster of engine processes and routes calls to them.

How data flows (every channel has exactly one reader)::

    Client / views (any thread)                          engine i (a process)
    ───────────────────────────                          ────────────────────
    apply_async(f, *a) ─ cloudpickle ─► task pipe i ───► loop: run f(*a, **kw)
    abort(), reclaim, Manager handle ─► control pipe i ─► control thread (answers a
                                                             Reclaim at once; the rest
                                                             applied between steps)
                                                             │
    AsyncResult ◄── Collector thread ◄─ event pipe i ◄───────┤ Result: value or error,
     (a Future:      (the one reader;  ◄─ pidfd i (death)    │ times, and how many Data
      callers wait    see collector)                         │ and Output frames it sent
      on it)               ▲                                 │
        ▲                  └────────── publication queue ◄── publish_data(d): one atomic
        │                              (one pipe, all         frame; print(): Output frames;
        ├── ar.data (dict.update        engines)              big arrays in shared memory;
        │   per task, per engine)                             the merged state is also kept,
        └── ar.stdout / ar.stderr                             coalesced, in the
                                       Manager dict ◄──────── Manager process (durable)

    lifeline pipe: the client holds its only write end; every child exits on its EOF.

Who owns what: the ledger (``ledger``) holds the engines and pending tasks under
one named lock; the collector thread (``collector``) alone reads and completes;
submitting threads only write task frames (``handles``); ``resources.ClusterResources`` owns the
teardown, and the helper threads that, after an engine's death, end what its
tasks started (``proctree``) and replace it (``restart_dead``, ``memory_limit``, with the
back-off of ``restarts``:
``memory.MemoryWatch`` is the one thread that watches engine sizes).  A result
is marked ready only after all of its task's publications are applied.  An
engine that dies is seen at once through its pidfd: only its own pending tasks
fail, with `EngineError`; the others keep serving and it can be replaced.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import sys
import threading
import weakref
from concurrent.futures import Future
from multiprocessing.context import BaseContext
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import ClientClosedError, NoEnginesError, not_picklable
from ..processes import clusters, launch, limits, proctree
from ..processes.lifeline import Lifeline
from ..processes.spin import SpinHint
from ..wire.messages import Abort, UseStore
from ..wire.ops import EngineOp
from ..wire.pubqueue import PublicationQueue
from ..wire.serialization import dumps_call
from ..wire.spec import EngineSpec
from . import attach, dependencies, memory, picklers
from . import status as status_module
from .asyncresult import AsyncResult
from .balancer import Balancer
from .collector import Collector
from .control import EngineControl
from .datastore import DataStore, ManagerStartError
from .handles import EngineHandle, TaskRecord
from .hub import HubMixin
from .ledger import Ledger
from .registry import note_opened
from .resources import ClusterResources
from .results import ResultIndex
from .sqlitedb import SQLiteStore
from .taskdb import TaskDB
from .view import DirectView, LoadBalancedView, Targets
from .weak import weakly

# Engines forked from this process start with the engine's code loaded, as when this module
# imported it: loaded here, with the client, not inside the first Client() (see launch).
launch.preload_engine()

Call = Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]
Kept = Union[bytes, Call, None]  # what the task database keeps of a call, for resubmit

default_start_method = launch.default_start_method  # kept importable from here

_EXECUTE_OPS = frozenset({"execute", "execute_interactive"})  # the engine operations of execute() and run()


class Client(HubMixin, EngineControl):
    """A cluster of `n` engine processes on this machine (default: one per CPU).

    Use it as a context manager, or call `close()`; it is also closed when
    garbage-collected and at interpreter exit.

    Arguments:

    n
        How many engines to start (an int, at least 1; default: ``os.cpu_count()``).
        More than 16 per usable CPU is refused with a ValueError (such a cluster mostly
        exhausts memory) unless ``oversubscribe=True``; more than 4 per CPU warns. Each
        engine holds 6 file descriptors in this process and takes about 5 threads and
        processes: a cluster that would pass ``ulimit -n`` or ``ulimit -u`` is refused with
        an ``OSError`` saying so, before anything starts (see ``localpar.limits``).
    start_method
        How engine processes are made, as in `multiprocessing`: ``"fork"`` (the
        fastest start; used by default while this process runs no other thread),
        ``"forkserver"`` (the default once threads run, as in Jupyter or after a
        first Client; functions still travel by value, so no ``__main__`` guard is
        needed) or ``"spawn"`` (a fresh interpreter per engine, the slowest).
        None picks the default; ``python -m localpar info`` shows it.
    datastore
        True (the default) also starts a ``multiprocessing.Manager`` process that
        keeps each engine's latest published data, so what an engine published is
        still on ``ar.data`` after the engine dies. False saves that process (one
        fewer process and socket): publications still reach ``ar.data``, but what
        a dying engine had not yet sent is lost.
    oversubscribe
        True allows more than 16 engines per usable CPU (here and in `add_engines`).
    memory_limit
        Bytes (an int) or a string like ``"2 GiB"``; default None (no limit). An engine
        whose resident memory passes it is killed (sampled every 50 ms, off the task
        path): its task fails with an `EngineError` naming the limit and the size reached,
        the data it had published stays on ``ar.data``, and a new engine with the same id
        takes its place.  A limit below an idle engine's size is refused (ValueError).
    restart_dead
        True replaces any engine that dies (a crash, a kill) by a new one with the same
        id; the dead engine's pending tasks still fail with `EngineError`. Default False.
        An engine that keeps dying soon after its start is replaced later and later, and
        after five such deaths in a row not at all (a warning, ``status()`` and the
        EngineError say so; ``restart_engine`` starts it again): see ``restarts``.
    db
        A path: task records also go to this SQLite file (see ``sqlitedb``), so that a later
        ``Client(db=path)`` still answers ``get_result``, ``db_query`` and ``hub_history`` for
        this run.  Default None: records are kept in memory only, bounded (``taskdb``).
    profile, cluster_id
        ``Client(n, profile=name)`` names the cluster it starts; ``Client(profile=name)`` (no `n`) or
        ``Client(cluster_id=id)`` attaches a second Client to that open cluster of this process,
        sharing its engines and task database, with its own ``history``; its ``close()`` leaves the
        cluster running: see ``attach``.  None open: an ``OSError``.

    Whatever an engine's tasks start (subprocesses, their children, daemons that left
    the session) is ended with it: see ``localpar.proctree`` and the README's Guarantees.
    """

    def __init__(
        self,
        n: Optional[int] = None,
        *,
        profile: Optional[str] = None,
        cluster_id: Optional[str] = None,
        start_method: Optional[str] = None,
        datastore: bool = True,
        oversubscribe: bool = False,
        memory_limit: Union[int, str, None] = None,
        restart_dead: bool = False,
        db: Optional[str] = None,
    ) -> None:
        if attach.wants_attach(n, profile, cluster_id):  # a second Client of an open cluster
            owner = attach.find_owner(Client.__init__, dict(locals()))
            vars(self).update({k: v for k, v in vars(owner).items() if k in attach.SHARED})
            self.history, self._results, self._attachment = [], ResultIndex(), attach.Attachment(owner)
            return
        # Checked before anything starts: a refused cluster leaves nothing behind.
        attach.check_name_free(profile)
        self.profile, self._attachment = profile, attach.Attachment()
        if n is None:
            n = os.cpu_count() or 1
        else:
            n = limits.engine_count(n, oversubscribe=oversubscribe)
            limits.warn_if_oversubscribed(n)
        self.memory_limit = None if memory_limit is None else memory.parse_size(memory_limit)
        self.restart_dead = bool(restart_dead)
        limits.check_descriptors(n)
        limits.check_processes(n)
        self._oversubscribe = oversubscribe
        self.start_method = start_method or launch.default_start_method()
        self._ctx: BaseContext = launch.get_context(self.start_method)
        self.cluster_id = secrets.token_hex(4)
        self.history: List[str] = []  # msg_ids in submission order, as ipyparallel's rc.history
        self._taskdb = TaskDB(self.cluster_id)
        self._store: Optional[SQLiteStore] = None
        if db is not None:  # before anything that needs cleaning up: a bad path leaves nothing
            self._store = self._taskdb.sink = SQLiteStore(db, self.cluster_id)
        self._authkey = os.urandom(32)
        self._lifeline = Lifeline()
        self._queue = PublicationQueue()
        self._spin_hint = SpinHint.create(self.cluster_id)
        self._ledger = Ledger(self._spin_hint)
        self._ledger.taskdb = self._taskdb
        self._collector = Collector(self.cluster_id, self._ledger, self._queue)
        self._cpu_meter = status_module.CpuMeter()
        self._start_lock = threading.Lock()  # one engine starts at a time: none inherits another's pipes
        # Results stay reachable by msg_id while the caller holds their AsyncResult:
        # a long-running client must not keep every result it ever computed.
        self._results = ResultIndex()
        self._balancer = Balancer(self._ledger)
        self._collector.on_room = self._balancer.schedule
        self._collector.on_reclaimed = self._balancer.requeue
        # Task flags (retries, after, follow, timeout; see dependencies): what the balancer needs.
        self._collector.deadlines = self._balancer.deadlines
        self._balancer.find_records = functools.partial(dependencies.find_records, self._results, self._taskdb)
        self._balancer.encode = functools.partial(dependencies.encode_call, self.cluster_id)
        self._cluster = ClusterResources(
            self.cluster_id,
            self._ledger,
            self._collector,
            self._balancer,
            self._lifeline,
            self._queue,
            self._spin_hint,
            self._start_lock,
            self.restart_dead,
        )
        self._collector.on_death = self._cluster.after_death
        self._collector.death_note = self._cluster.note_death
        self._balancer.will_replace = self._cluster.will_replace
        self._cluster.replace = weakly(self, Client._replace_dead)
        self._finalizer = weakref.finalize(self, self._cluster.close)
        self._finalizer.atexit = False  # processes.clusters closes it at exit, before multiprocessing's own hook
        self._db_finalizer = weakref.finalize(self, self._store.close) if self._store is not None else None
        clusters.register(self._cluster)
        try:
            for engine_id in self._ledger.reserve_ids(n):
                self._start_engine(engine_id)
            if datastore:  # the Manager starts at the cluster's first publication (see datastore)
                self._collector.on_first_data = weakly(self, Client._start_datastore_thread)
            with limits.starting("the collector thread"):
                self._collector.start()  # the first thread: engines above were forked from a single-threaded process
            if self.memory_limit is not None:
                watch = memory.MemoryWatch(self._ledger, self.memory_limit, self.cluster_id)
                watch.refuse_below_idle_size(self.memory_limit)  # it would kill and replace engines forever
                self._cluster.memory_watch = watch
                with limits.starting("the memory watch thread"):
                    watch.start()
            note_opened(self)  # refuses a profile another thread opened meanwhile
        except BaseException:
            self._finalizer()
            if self._db_finalizer is not None:
                self._db_finalizer()
            raise
        if "IPython" in sys.modules:  # inside IPython, %px runs on this cluster (as in ipyparallel)
            from ..integrations.magics import activate_default

            activate_default(self)

    # -- engines ---------------------------------------------------------------------------
    def _start_engine(
        self, engine_id: int, ctx: Optional[BaseContext] = None, replacing: Optional[EngineHandle] = None
    ) -> EngineHandle:
        """Start engine `engine_id`; if `replacing` (its dead or dying predecessor) was replaced
        meanwhile (by ``restart_dead`` or ``restart_engine``, whichever came first), keep that one."""
        ctx = ctx or self._ctx
        with self._start_lock:
            if self._cluster.closed:
                raise ClientClosedError("this Client is closed")
            current = self._ledger.engines.get(engine_id)
            if replacing is not None and current is not None and current is not replacing:
                return current
            task_r, task_w = ctx.Pipe(duplex=False)
            control_r, control_w = ctx.Pipe(duplex=False)
            events_r, events_w = ctx.Pipe(duplex=False)
            spec = EngineSpec(
                engine_id, self.cluster_id, self._authkey, task_r, control_r, events_w,
                self._queue.writer, self._lifeline.reader, self._spin_hint.name,
            )  # fmt: skip
            process = ctx.Process(  # type: ignore[attr-defined]
                target=launch.run_engine, args=(spec,), name=f"localpar-engine-{engine_id}"
            )
            # The engine inherits a blocked SIGINT and unblocks it once its own handler
            # is set, so an interrupt during start-up cannot kill it.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                with limits.starting(f"engine {engine_id}"):
                    process.start()
            except BaseException:
                for conn in (task_r, task_w, control_r, control_w, events_r, events_w):
                    conn.close()
                raise
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for conn in (task_r, control_r, events_w):
                conn.close()
            handle = EngineHandle(engine_id, process, task_w, control_w, events_r, self._ledger.watch_again)
            if current is not None:
                handle.restarts = current.restarts + 1
                handle.uuid = current.uuid  # an engine id keeps its uuid across restarts
            self._ledger.add_engine(handle)
        store = self._collector.store
        if store is not None and self._collector.store_error is None:
            handle.send_control(UseStore(store.proxy_bytes))
        return handle

    def _start_datastore_thread(self) -> None:
        """The collector saw the cluster's first publication: start the Manager beside it."""
        self._cluster.start_datastore(weakly(self, Client._start_datastore))

    def _start_datastore(self) -> None:
        """Runs in a thread of its own: the tasks go on publishing while the Manager starts.
        Not forked from this process (see ``launch.clean_method``): a fork landing while the
        user's code is inside ``subprocess.Popen`` would keep Popen waiting on the Manager."""
        try:
            try:
                store = DataStore(
                    launch.get_context(launch.clean_method()), self._authkey, self._lifeline.reader, self.cluster_id
                )
            except OSError:  # no forkserver here (a tight ulimit -n): a fork, as before
                store = DataStore(
                    launch.get_context(launch.threaded_method()), self._authkey, self._lifeline.reader, self.cluster_id
                )
        except Exception as exc:  # the cluster still computes and publishes without it
            why = str(exc) if isinstance(exc, ManagerStartError) else f"{type(exc).__name__}: {exc}"
            self._collector.store_error = f"the Manager process could not start: {why}"
            return
        if not self._cluster.adopt_store(store):
            store.shutdown()  # closed meanwhile
            return
        self._collector.attach_store(store)

    def _later_context(self) -> BaseContext:
        """Engines added while the collector runs."""
        return launch.get_context(launch.threaded_method()) if self.start_method == "fork" else self._ctx

    @property
    def ids(self) -> List[int]:
        """The ids of the live engines."""
        return self._ledger.live_ids()

    def __len__(self) -> int:
        return len(self.ids)

    def __reduce__(self) -> Any:
        raise not_picklable(self, "it owns its engine processes and their pipes, which live in this process only")

    def __repr__(self) -> str:
        n = 0 if self.closed else len(self.ids)
        state = "closed" if self.closed else f"{n} engine{'' if n == 1 else 's'}"
        how = "" if self.owner is self else " (attached)"
        return f"<localpar.Client {self.cluster_id}{how}: {state}, {self.start_method}>"

    @property
    def ledger(self) -> Ledger:
        """The engines and pending tasks of this cluster (see ``localpar.client.ledger``), for
        the views and results; not for users."""
        return self._ledger

    @property
    def closed(self) -> bool:
        """Whether `close()` has run (or the cluster broke, or was closed by its owner)."""
        return self._cluster.closed or self._ledger.closed or self._attachment.closed

    @property
    def owner(self) -> Client:
        """The Client that started this cluster: itself, unless attached (``Client(profile=...)``)."""
        owner = self._attachment.owner
        return self if owner is None else owner

    def status(self) -> status_module.Status:
        """Each live engine: pid, state (idle, or running which call since when), resident
        memory, CPU % (since the previous call), tasks done, restarts.  A table in a REPL
        and in Jupyter; ``.engines[i]`` holds the fields.  Reads what the client already
        knows and /proc on demand: it costs the tasks nothing."""
        self._check_open()
        return status_module.collect(
            self._ledger, self._cpu_meter, self.memory_limit, self._cluster.restarts.given_up()
        )

    def engine_pids(self) -> Dict[int, int]:
        """``{engine_id: pid}`` of the live engines."""
        return {h.id: h.pid for h in self._ledger.live_handles()}

    @property
    def manager_pid(self) -> Optional[int]:
        """The pid of the Manager process holding the durable data; None until the cluster's
        first ``publish_data`` has started it."""
        store = self._collector.store
        return None if store is None else store.pid

    @property
    def datastore_error(self) -> Optional[str]:
        """Why the Manager (the durable data store) is unavailable, or None while it serves."""
        return self._collector.store_error

    def restart_engine(self, engine_id: int) -> None:
        """Replace engine `engine_id` (dead or alive) by a fresh process with the same id."""
        self._check_open()
        handle = self._ledger.engines.get(engine_id)
        if handle is None:
            raise IndexError(f"no engine {engine_id}")
        self._cluster.restarts.forget(engine_id)  # given up on by restart_dead or not, it starts again
        if handle.alive:
            tree = proctree.scan([handle.pid])  # while it lives, its tree holds all it started
            handle.process.kill()
            # This handle, not the id: with restart_dead, a replacement may hold the id already.
            if not self._ledger.wait_until(lambda: not handle.alive or self._cluster.closed, 10):
                raise TimeoutError(
                    f"engine {engine_id} (pid {handle.pid}) did not exit within 10 s of SIGKILL; not restarted"
                )
            self._cluster.end_in_background(tree)
        self._start_engine(engine_id, self._later_context(), replacing=handle)

    def _replace_dead(self, handle: EngineHandle) -> None:
        """In a helper thread: the replacement of a dead engine (``restart_dead``, ``memory_limit``)."""
        with contextlib.suppress(ClientClosedError):
            self._start_engine(handle.id, self._later_context(), replacing=handle)

    def add_engines(self, n: int = 1) -> List[int]:
        """Start `n` more engines; returns their ids.  All or nothing: if one cannot
        start, those already started are stopped again and the error is raised."""
        self._check_open()
        n = limits.engine_count(n, oversubscribe=True)
        total = limits.engine_count(len(self.ids) + n, oversubscribe=self._oversubscribe, name="the engine count")
        limits.warn_if_oversubscribed(total)
        limits.check_descriptors(n, new_cluster=False)
        limits.check_processes(total)
        new = self._ledger.reserve_ids(n)
        started: List[EngineHandle] = []
        try:
            for engine_id in new:
                started.append(self._start_engine(engine_id, self._later_context()))
        except BaseException:
            for handle in started:
                handle.retired = True  # not to be replaced by restart_dead
                handle.process.kill()
            for handle in started:
                self.wait_for_death(handle.id, timeout=10)
            raise
        return new

    def wait_for_death(self, engine_id: int, timeout: float = 10) -> bool:
        """Wait until the client has noticed that engine `engine_id` is gone."""
        handle = self._ledger.engines[engine_id]
        return self._ledger.wait_until(lambda: not handle.alive or self._cluster.closed, timeout)

    # -- views -----------------------------------------------------------------------------
    def __getitem__(self, key: Union[int, slice, Sequence[int]]) -> DirectView:
        if not isinstance(key, (int, slice, tuple, list, range)):
            raise TypeError(f"key by int/slice/iterable of ints only, not {type(key)}")
        self._check_open()
        live = self.ids  # read once
        if isinstance(key, int):
            if key < 0 and -key <= len(live):  # c[-1]: the last live engine, as in ipyparallel
                key = live[key]
            if key not in live:
                live = self._ledger.live_after_replacements([key])
            if key not in live:
                raise IndexError(f"no live engine {key}; live engines: {live}{self._ledger.replacing_note([key])}")
            return DirectView(self, key)
        if isinstance(key, slice):
            return DirectView(self, live[key])
        targets = list(key)
        missing = [t for t in targets if t not in live]
        if missing:
            live = self._ledger.live_after_replacements(missing)
            missing = [t for t in targets if t not in live]
        if missing:
            raise IndexError(f"no live engines {missing}; live engines: {live}{self._ledger.replacing_note(missing)}")
        return DirectView(self, targets)

    def __iter__(self) -> Iterator[DirectView]:
        """One DirectView per live engine."""
        for engine_id in self.ids:
            yield DirectView(self, engine_id)

    def direct_view(self, targets: Targets = "all") -> DirectView:
        return DirectView(self, self.normalize_targets(targets))

    def load_balanced_view(self, targets: Targets = None) -> LoadBalancedView:
        if targets == "all":
            targets = None
        elif targets is not None:
            targets = self.normalize_targets(targets)
            targets = [targets] if isinstance(targets, int) else targets
        return LoadBalancedView(self, targets)

    def normalize_targets(self, targets: Targets) -> Targets:
        """``-1`` (or ``[-1, 0]``, a slice) named by position among the live engines, as in ipyparallel."""
        if isinstance(targets, slice):
            return self.ids[targets]
        if isinstance(targets, int) and targets < 0:
            return self.ids[targets]
        if isinstance(targets, (list, tuple, range)) and any(t < 0 for t in targets):
            live = self.ids
            return [live[t] if t < 0 else t for t in targets]
        return targets

    def activate(self, targets: Targets = "all", suffix: str = "") -> DirectView:
        """A blocking DirectView on `targets` whose ``%px`` magics (``%px{suffix}``...) are registered."""
        view = self.direct_view(targets)
        view.block = True
        view.activate(suffix)
        return view

    def executor(self, targets: Targets = None) -> Any:
        """A ``concurrent.futures.Executor`` over a load-balanced view of `targets`."""
        return self.load_balanced_view(targets).executor

    # -- submission ------------------------------------------------------------------------
    def _check_open(self) -> None:
        self._attachment.check_usable(self._cluster)

    def resolve_targets(self, targets: Targets) -> List[int]:
        self._check_open()
        live = self.ids
        if targets is None or targets == "all":
            ids = live
        elif isinstance(targets, int):
            ids = [targets]
        elif isinstance(targets, str):
            raise ValueError(f"targets must be 'all', an engine id or a list of ids, got {targets!r}")
        else:
            ids = list(targets)
        dead = [t for t in ids if t not in live]
        if dead:
            live = self._ledger.live_after_replacements(dead)
            dead = [t for t in ids if t not in live]
        if dead:
            note = self._ledger.replacing_note(dead)
            raise NoEnginesError(f"engines {dead} are not alive; live engines: {live}{note}")
        if not ids:
            raise NoEnginesError("no engines to run on")
        return ids

    def _encode(self, f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[bytes, list]:
        if not callable(f):
            raise TypeError(f"expected a callable to run on the engines, got {type(f).__name__}: {f!r:.80}")
        if self.main_globals == picklers.ENGINE_GLOBALS:  # view.use_pickle()
            f, args, kwargs = picklers.strip_call(f, args, kwargs)
        return dumps_call(f, args, kwargs, self.cluster_id)

    def _new_record(
        self, ar: AsyncResult, engine_id: int, call: Kept = None, queue: str = "mux", history: bool = True
    ) -> TaskRecord:
        """A new task of `ar`, in the task database with `call` (see ``TaskDB.add``)."""
        seq = self._ledger.next_seq()
        record = TaskRecord(seq, f"{self.cluster_id}-{seq}", engine_id, ar, len(ar.records))
        ar.add_task(record)
        self._results[record.msg_id] = ar
        self._taskdb.add(record, queue, call, ar.fname)  # the Hub's record (see hub)
        if history:
            self.history.append(record.msg_id)
        return record

    def send_calls(
        self, calls: Sequence[Tuple[int, Call]], fname: str, single: bool = False, ar: Optional[AsyncResult] = None
    ) -> AsyncResult:
        """Run each ``(engine_id, (f, args, kwargs))``; identical calls are pickled once."""
        self._check_open()
        ar = ar if ar is not None else AsyncResult(self, fname, single)
        if calls and isinstance(calls[0][1][0], EngineOp) and calls[0][1][0].__name__ in _EXECUTE_OPS:
            ar.method = "execute"  # before any task leaves: its error's engine_info names it
        encoded: Dict[int, Tuple[bytes, list]] = {}
        plan = []
        for engine_id, call in calls:
            key = id(call)
            if key not in encoded:
                encoded[key] = self._encode(*call)
                if encoded[key][1]:
                    ar.hold_segments(encoded[key][1])
            blob, segments = encoded[key]
            plan.append((self._new_record(ar, engine_id, call if segments else blob), blob))
        ar.mark_sent()  # nobody else has it yet: it cannot have been cancelled
        for record, blob in plan:
            self._ledger.send(record, blob)
        return ar

    def send_balanced(
        self,
        calls: Sequence[Call],
        ar: AsyncResult,
        targets: Optional[List[int]],
        flags: Optional[dependencies.FlagValues] = None,
    ) -> AsyncResult:
        """Queue calls for whichever engine (of `targets`) is free first; with `flags`
        (retries, after, follow, timeout), as they say (see ``dependencies``)."""
        self._check_open()
        blobs, kept = [], []
        for call in calls:
            blob, segments = self._encode(*call)
            if segments:
                ar.hold_segments(segments)
            blobs.append(blob)
            kept.append(call if segments else blob)  # see _new_record
        items = [(self._new_record(ar, -1, k, "task"), b, targets) for k, b in zip(kept, blobs)]
        if flags is None:
            self._balancer.submit(ar, items)
        else:
            self._balancer.submit_flagged(ar, items, flags)
        return ar

    @property
    def load_balance_depth(self) -> int:
        """Tasks a load-balanced view queues on one engine (ipyparallel's ``hwm``; default 2)."""
        return self._balancer.depth

    @load_balance_depth.setter
    def load_balance_depth(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"load_balance_depth must be >= 1, got {depth}")
        self._balancer.depth = depth

    def cancel_unsent(self, ar: AsyncResult) -> bool:
        """Cancel `ar` if none of its tasks was handed to an engine yet."""
        return self._balancer.cancel(ar)

    def _check_can_wait(self) -> None:
        self._ledger.check_can_wait()

    # -- ipyparallel's client-level calls ------------------------------------------------
    block = False
    """The default of ``block`` for the client's own calls (``clear``), as in ipyparallel."""

    def clear(self, targets: Targets = None, block: Optional[bool] = None) -> Any:
        """Clear the engines' namespaces, as ipyparallel's ``clear`` does."""
        ar = self.send_calls([(i, (EngineOp("clear"), (), {})) for i in self.resolve_targets(targets)], "clear")
        return ar.get() if (self.block if block is None else block) else ar

    def wait(self, jobs: Any = None, timeout: Optional[float] = -1) -> bool:
        """Wait for `jobs`: an AsyncResult, a msg_id, a Future, or a list of them (default:
        everything outstanding); True if all are done within `timeout` seconds."""
        if jobs is None:
            ars: List[Any] = [ar for ar in set(self._results.values()) if not ar.done()]
        else:
            if isinstance(jobs, (str, AsyncResult, Future)):
                jobs = [jobs]
            ars = []
            for job in jobs:
                if isinstance(job, (AsyncResult, Future)):
                    ars.append(job)
                else:
                    try:
                        ars.append(self._results[job])
                    except KeyError:  # finished and forgotten, as ipyparallel treats unknown ids
                        continue
        for f in ars:
            if not isinstance(f, AsyncResult):  # a plain Future: its completion must wake us too
                f.add_done_callback(lambda _: self._ledger.notify_waiters())
        if not all(f.done() for f in ars):
            self._check_can_wait()
        return self._ledger.wait_until(lambda: all(f.done() for f in ars), timeout)

    def wait_interactive(self, jobs: Any = None, interval: float = 1.0, timeout: Optional[float] = -1) -> None:
        """Wait for `jobs` (default: all outstanding) while showing progress."""
        if jobs is None:
            ars = [ar for ar in set(self._results.values()) if not ar.done()]
        else:
            given = [jobs] if isinstance(jobs, (str, AsyncResult)) else list(jobs)
            ars = [ar if isinstance(ar, AsyncResult) else self._results[ar] for ar in given]
        if ars:
            AsyncResult.join(*ars).wait_interactive(interval=interval, timeout=timeout)

    def abort(self, jobs: Any = None, targets: Targets = None, block: Optional[bool] = None) -> None:
        """Drop tasks that have not started (default: all outstanding, of `targets` if given)."""
        if isinstance(jobs, str):
            jobs = [jobs]
        if jobs is None:  # this client's outstanding ones: not every result still held
            records = self._ledger.pending_records() + self._balancer.queued_records()
            records = [r for r in records if r.msg_id in self._results]  # a pending task's result lives
        elif isinstance(jobs, AsyncResult):
            records = list(jobs.records)
        else:
            records = [r for job in jobs for r in (job if isinstance(job, AsyncResult) else self._results[job]).records]
        if targets is not None and targets != "all":
            engines = set(self.resolve_targets(targets))
            records = [r for r in records if r.engine_id in engines]
        dropped = set(self._balancer.drop(records))  # not yet handed to an engine
        by_engine: Dict[int, List[int]] = {}
        for r in records:
            if not r.done and r.engine_id >= 0 and r not in dropped:
                by_engine.setdefault(r.engine_id, []).append(r.seq)
        for engine_id, seqs in by_engine.items():
            self._ledger.engines[engine_id].send_control(Abort(seqs))

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the engines, the Manager and the collector thread; idempotent.  An attached
        Client (see ``attach``) is closed alone: the cluster runs on for its owner."""
        if self._attachment.detach():
            return
        clusters.discard(self._cluster)
        self._finalizer()
        if self._db_finalizer is not None:  # after the cluster: the last failures are recorded too
            self._db_finalizer()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
