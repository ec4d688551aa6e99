"""Client: starts a local cluster of engine processes and routes calls to them.

How data flows (every channel has one reader at a time)::

    Client / views                                       engine i (a process)
    ──────────────                                       ────────────────────
    apply_async(f, *a) ─ cloudpickle ─► task pipe i ───► loop: run f(*a, **kw)
    abort(), store handle ────────────► control pipe i ─►   (polled between steps)
                                                             │
    AsyncResult ◄─ Router.pump() ◄──── result pipe i ◄──────┤ value or error, stdout,
        ▲           (a waiting get(),  ◄── sentinel i        │ times, publication count
        │            ar.data, or the                         │
        │            drain thread)  ◄─ publication queue ◄── publish_data(d): one atomic
        │                                (one pipe, all       frame; big arrays in shared
        └── ar.data (dict.update per      engines)            memory; the merged state is
            task, per engine)                                 also kept, coalesced, in the
                                         Manager dict ◄────── Manager process (durable)

    lifeline pipe: the client holds its only write end; every child exits on its EOF.

A result is marked ready only after all of its task's publications are applied.
An engine that dies is seen at once through its sentinel: only its own pending
tasks fail, with `EngineError`; the others keep serving and it can be replaced.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing
import os
import secrets
import signal
import sys
import threading
import weakref
from concurrent.futures import Future
from multiprocessing import spawn as mp_spawn
from multiprocessing.context import BaseContext
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import namespace, sharedmem
from .asyncresult import AsyncResult
from .balancer import Balancer
from .datastore import DataStore
from .engine import STOP, EngineSpec, run_engine
from .errors import NoEnginesError
from .handles import EngineHandle, TaskRecord
from .lifeline import Lifeline
from .pubqueue import PublicationQueue
from .router import Router
from .serialization import dumps_call
from .spin import SpinHint
from .view import DirectView, LoadBalancedView, Targets

Call = Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]


def default_start_method() -> str:
    """fork while the process has no other thread (fast, safe); forkserver otherwise.

    From Python 3.12, which warns about forking any threaded process, native
    threads count too (e.g. a BLAS thread pool started by importing numpy).
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        if sys.version_info < (3, 12) or _native_thread_count() == 1:
            return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _native_thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def threaded_context() -> BaseContext:
    """A context for starting processes while threads run (the drain thread, at least).

    Forking a threaded process is formally unsafe and warns from Python 3.12;
    before that, our forked children touch no lock another thread may hold.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and sys.version_info < (3, 12):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class Client:
    """A cluster of `n` engine processes on this machine (default: one per CPU).

    Use it as a context manager, or call `close()`; it is also closed when
    garbage-collected and at interpreter exit.
    """

    def __init__(self, n: Optional[int] = None, *, start_method: Optional[str] = None, datastore: bool = True) -> None:
        if n is None:
            n = os.cpu_count() or 1
        if n < 1:
            raise ValueError(f"a cluster needs at least one engine, got n={n}")
        self.start_method = start_method or default_start_method()
        self._ctx: BaseContext = multiprocessing.get_context(self.start_method)
        self.cluster_id = secrets.token_hex(4)
        self._authkey = os.urandom(32)
        self._lifeline = Lifeline()
        self._queue = PublicationQueue()
        self._spin_hint = SpinHint.create(self.cluster_id)
        self._router = Router(self.cluster_id, self._queue, self._spin_hint)
        self._seq = itertools.count(1)
        self._closed = False
        # Results stay reachable by msg_id while the caller holds their AsyncResult:
        # a long-running client must not keep every result it ever computed.
        self._results = _ResultIndex()
        self._balancer = Balancer(self._router)
        self._router.on_task_done = self._balancer.schedule
        self._state = _ClusterState(self._router, self._lifeline, self._queue, self.cluster_id)
        self._finalizer = weakref.finalize(self, self._state.close)
        self._finalizer.atexit = False  # _close_at_exit runs first, before multiprocessing's own hook
        _live_states.add(self._state)
        try:
            for engine_id in range(n):
                self._start_engine(engine_id)
        except BaseException:
            self._finalizer()
            raise
        # The drain thread holds the Client only weakly, so an unreferenced Client
        # is collected and its finalizer closes the cluster.
        self._drain = threading.Thread(
            target=self._router.drain_forever,
            args=(_weakly(self, Client._start_datastore) if datastore else None,),
            name=f"localpar-drain-{self.cluster_id}",
            daemon=True,
        )
        self._state.drain = self._drain
        self._drain.start()
        if "IPython" in sys.modules:  # inside IPython, %px runs on this cluster (as in ipyparallel)
            from .magics import activate_default

            activate_default(self)

    # -- engines ---------------------------------------------------------------------------
    def _start_engine(self, engine_id: int, ctx: Optional[BaseContext] = None) -> EngineHandle:
        ctx = ctx or self._ctx
        task_r, task_w = ctx.Pipe(duplex=False)
        control_r, control_w = ctx.Pipe(duplex=False)
        events_r, events_w = ctx.Pipe(duplex=False)
        forked = ctx.get_start_method() == "fork"
        inherited = (*self._router.client_fds(), self._lifeline.write_fd) if forked else ()
        spec = EngineSpec(
            engine_id, self.cluster_id, self._authkey, task_r, control_r, events_w,
            self._queue.writer, self._lifeline.reader, self._spin_hint.name, tuple(inherited),
        )  # fmt: skip
        process = ctx.Process(  # type: ignore[attr-defined]
            target=run_engine, args=(spec,), name=f"localpar-engine-{engine_id}"
        )
        # The engine inherits a blocked SIGINT and unblocks it once its own handler
        # is set, so an interrupt during start-up cannot kill it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with _main_module_not_rerun():
                process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for conn in (task_r, control_r, events_w):
            conn.close()
        handle = EngineHandle(engine_id, process, task_w, control_w, events_r)
        self._router.add_engine(handle)
        store = self._router.store
        if store is not None and self._router.store_error is None:
            handle.send_control(("store", store.dict))
        self._router.wake()  # let the drain thread watch the new engine
        return handle

    def _start_datastore(self) -> None:
        """Runs in the drain thread: the Manager starts while the caller already works."""
        ctx = threaded_context()
        forked = ctx.get_start_method() == "fork"
        inherited = (*self._router.client_fds(), self._lifeline.write_fd) if forked else ()
        try:
            with _main_module_not_rerun():
                store = DataStore(ctx, self._authkey, self._lifeline.reader, inherited, self.cluster_id)
        except Exception as exc:  # the cluster still computes and publishes without it
            self._router.store_error = f"the Manager process could not start: {exc}"
            return
        self._state.store = store
        if self._router.closed:
            store.shutdown()
            return
        self._router.attach_store(store)

    def _later_context(self) -> BaseContext:
        """Engines added while the drain thread runs."""
        return threaded_context() if self.start_method == "fork" else self._ctx

    @property
    def ids(self) -> List[int]:
        """The ids of the live engines."""
        self._router.pump_nowait()
        return sorted(i for i, h in self._router.engines.items() if h.alive)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.ids)} engines"
        return f"<localpar.Client {self.cluster_id}: {state}, {self.start_method}>"

    def engine_pids(self) -> Dict[int, int]:
        """``{engine_id: pid}`` of the live engines."""
        return {i: self._router.engines[i].pid for i in self.ids}

    @property
    def manager_pid(self) -> Optional[int]:
        """The pid of the Manager process holding the durable data, once started."""
        store = self._router.store
        return None if store is None else store.pid

    def restart_engine(self, engine_id: int) -> None:
        """Replace engine `engine_id` (dead or alive) by a fresh process with the same id."""
        self._check_open()
        handle = self._router.engines.get(engine_id)
        if handle is None:
            raise IndexError(f"no engine {engine_id}")
        if handle.alive:
            handle.process.kill()
            self.wait_for_death(engine_id, timeout=10)
        self._start_engine(engine_id, self._later_context())

    def add_engines(self, n: int = 1) -> List[int]:
        """Start `n` more engines; returns their ids."""
        self._check_open()
        first = max(self._router.engines, default=-1) + 1
        new = list(range(first, first + n))
        for engine_id in new:
            self._start_engine(engine_id, self._later_context())
        return new

    def wait_for_death(self, engine_id: int, timeout: float = 10) -> bool:
        """Wait until the client has noticed that engine `engine_id` is gone."""
        handle = self._router.engines[engine_id]
        return self._router.wait_until(lambda: not handle.alive, timeout)

    def send_signal(self, sig: Union[int, str], targets: Targets = None, block: Optional[bool] = None) -> None:
        """Send signal `sig` (a number or a name like ``'SIGINT'``) to the engines of `targets`.

        SIGINT raises KeyboardInterrupt in the running tasks (see `interrupt`); another signal
        acts on the engine process itself (SIGKILL ends it: its tasks fail with EngineError).
        """
        signum = getattr(signal, sig) if isinstance(sig, str) else int(sig)
        if signum == signal.SIGINT:
            self.interrupt(targets)
            return
        for engine_id in self._resolve(targets):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._router.engines[engine_id].pid, signum)

    def interrupt(self, targets: Targets = None) -> None:
        """Raise KeyboardInterrupt inside the tasks running on `targets` (default: all)."""
        self._router.pump_nowait()
        for engine_id in self._resolve(targets):
            handle = self._router.engines[engine_id]
            if not handle.ready:
                continue  # still starting: it runs no task, and SIGINT could kill it
            try:
                os.kill(handle.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    # -- views -----------------------------------------------------------------------------
    def __getitem__(self, key: Union[int, slice, Sequence[int]]) -> DirectView:
        if not isinstance(key, (int, slice, tuple, list, range)):
            raise TypeError(f"key by int/slice/iterable of ints only, not {type(key)}")
        live = self.ids  # read once: each read applies what has arrived
        if isinstance(key, int):
            if key < 0 and -key <= len(live):  # c[-1]: the last live engine, as in ipyparallel
                key = live[key]
            if key not in live:
                raise IndexError(f"no live engine {key}; live engines: {live}")
            return DirectView(self, key)
        if isinstance(key, slice):
            return DirectView(self, live[key])
        targets = list(key)
        missing = [t for t in targets if t not in live]
        if missing:
            raise IndexError(f"no live engines {missing}; live engines: {live}")
        return DirectView(self, targets)

    def __iter__(self) -> Iterator[DirectView]:
        """One DirectView per live engine."""
        for engine_id in self.ids:
            yield DirectView(self, engine_id)

    def direct_view(self, targets: Targets = "all") -> DirectView:
        return DirectView(self, self._negative_targets(targets))

    def load_balanced_view(self, targets: Targets = None) -> LoadBalancedView:
        if targets == "all":
            targets = None
        elif targets is not None:
            targets = self._negative_targets(targets)
            targets = [targets] if isinstance(targets, int) else targets
        return LoadBalancedView(self, targets)

    def _negative_targets(self, targets: Targets) -> Targets:
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
        if self._closed:
            raise RuntimeError("this Client is closed")

    def _resolve(self, targets: Targets) -> List[int]:
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
            raise NoEnginesError(f"engines {dead} are not alive; live engines: {live}")
        if not ids:
            raise NoEnginesError("no engines to run on")
        return ids

    def _encode(self, f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[bytes, list]:
        if not callable(f):
            raise TypeError(f"expected a callable to run on the engines, got {type(f).__name__}: {f!r:.80}")
        return dumps_call(f, args, kwargs, self.cluster_id)

    def _new_record(self, ar: AsyncResult, engine_id: int) -> TaskRecord:
        seq = next(self._seq)
        record = TaskRecord(seq, f"{self.cluster_id}-{seq}", engine_id, ar, len(ar._records))
        ar._add_record(record)
        self._results[record.msg_id] = ar
        return record

    def _submit(
        self, calls: Sequence[Tuple[int, Call]], fname: str, single: bool = False, ar: Optional[AsyncResult] = None
    ) -> AsyncResult:
        """Run each ``(engine_id, (f, args, kwargs))``; identical calls are pickled once."""
        self._check_open()
        ar = ar if ar is not None else AsyncResult(self, fname, single)
        encoded: Dict[int, Tuple[bytes, list]] = {}
        plan = []
        for engine_id, call in calls:
            key = id(call)
            if key not in encoded:
                encoded[key] = self._encode(*call)
                ar._segments += encoded[key][1]
            plan.append((self._new_record(ar, engine_id), encoded[key][0]))
        for record, blob in plan:
            self._router.send(record, blob)
        self._router.pump_while_submitting()
        return ar

    def _submit_balanced(self, calls: Sequence[Call], ar: AsyncResult, targets: Optional[List[int]]) -> AsyncResult:
        """Queue calls for whichever engine (of `targets`) is free first."""
        self._check_open()
        blobs = []
        for call in calls:
            blob, segments = self._encode(*call)
            ar._segments += segments
            blobs.append(blob)
        self._balancer.submit([(self._new_record(ar, -1), blob, targets) for blob in blobs])
        self._router.pump_while_submitting()
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

    def _release_segments(self, ar: AsyncResult) -> None:
        for ref in ar._segments:
            sharedmem.unlink(ref.name)
        ar._segments = []

    # -- ipyparallel's client-level calls ------------------------------------------------
    @property
    def outstanding(self) -> set:
        """msg_ids of the tasks not yet finished."""
        self._router.pump_nowait()
        with self._router.state_lock:
            pending = {r.msg_id for r in self._router.records.values()}
        pending |= self._balancer.queued_msg_ids()
        return pending

    @property
    def results(self) -> Dict[str, Any]:
        """``{msg_id: result}`` of finished tasks, as in ipyparallel."""
        self._router.pump_nowait()
        out: Dict[str, Any] = {}
        for ar in set(self._results.values()):
            for r in ar._records:
                if r.done:
                    out[r.msg_id] = r.error if r.error is not None else r.value
        return out

    block = False
    """The default of ``block`` for the client's own calls (``clear``), as in ipyparallel."""

    def clear(self, targets: Targets = None, block: Optional[bool] = None) -> Any:
        """Clear the engines' namespaces, as ipyparallel's ``clear`` does."""
        ar = self._submit([(i, (namespace.clear, (), {})) for i in self._resolve(targets)], "clear")
        return ar.get() if (self.block if block is None else block) else ar

    def purge_results(self, jobs: Any = (), targets: Targets = ()) -> None:
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
            engines = set(self._resolve(targets))
            msg_ids += [r.msg_id for _, ar in self._results.items() for r in ar._records if r.engine_id in engines]
        running = set(msg_ids) & self.outstanding
        if running:
            raise RuntimeError(f"Can't purge outstanding tasks: {sorted(running)}")
        for msg_id in msg_ids:
            self._results.pop(msg_id, None)

    purge_local_results = purge_results

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
        if any(not isinstance(f, AsyncResult) for f in ars):  # a plain Future: wake us when it is done
            for f in ars:
                if not isinstance(f, AsyncResult):
                    f.add_done_callback(lambda _: self._router.wake())
        return self._router.wait_until(lambda: all(f.done() for f in ars), timeout)

    def wait_interactive(self, jobs: Any = None, interval: float = 1.0, timeout: Optional[float] = -1) -> None:
        """Wait for `jobs` (default: all outstanding) while showing progress."""
        from .split import join

        if jobs is None:
            ars = [ar for ar in set(self._results.values()) if not ar.done()]
        else:
            given = [jobs] if isinstance(jobs, (str, AsyncResult)) else list(jobs)
            ars = [ar if isinstance(ar, AsyncResult) else self._results[ar] for ar in given]
        if ars:
            join(*ars).wait_interactive(interval=interval, timeout=timeout)

    def abort(self, jobs: Any = None, targets: Targets = None, block: Optional[bool] = None) -> None:
        """Drop tasks that have not started (default: all outstanding, of `targets` if given)."""
        if isinstance(jobs, str):
            jobs = [jobs]
        if jobs is None:
            records = [r for ar in set(self._results.values()) for r in ar._records]
        elif isinstance(jobs, AsyncResult):
            records = list(jobs._records)
        else:
            records = [
                r for job in jobs for r in (job if isinstance(job, AsyncResult) else self._results[job])._records
            ]
        if targets is not None and targets != "all":
            engines = set(self._resolve(targets))
            records = [r for r in records if r.engine_id in engines]
        dropped = self._balancer.drop({r.seq for r in records})  # not yet handed to an engine
        by_engine: Dict[int, List[int]] = {}
        for r in records:
            if not r.done and r.engine_id >= 0 and r not in dropped:
                by_engine.setdefault(r.engine_id, []).append(r.seq)
        for engine_id, seqs in by_engine.items():
            self._router.engines[engine_id].send_control(("abort", seqs))
        self._router.run_callbacks()

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the engines, the Manager and the drain thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        _live_states.discard(self._state)
        self._finalizer()

    shutdown = close

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _ResultIndex:
    """AsyncResults by msg_id, held weakly; cheaper per task than a WeakValueDictionary
    (no callback per entry: dead entries are swept as the index grows)."""

    def __init__(self) -> None:
        self._refs: Dict[str, Callable[[], Optional[AsyncResult]]] = {}
        self._sweep_at = 1024

    def __setitem__(self, msg_id: str, ar: AsyncResult) -> None:
        self._refs[msg_id] = weakref.ref(ar)
        if len(self._refs) >= self._sweep_at:
            self._refs = {m: ref for m, ref in self._refs.items() if ref() is not None}
            self._sweep_at = max(1024, 2 * len(self._refs))

    def __getitem__(self, msg_id: str) -> AsyncResult:
        ar = self._refs[msg_id]()
        if ar is None:
            raise KeyError(msg_id)
        return ar

    def pop(self, msg_id: str, default: Any = None) -> Any:
        ref = self._refs.pop(msg_id, None)
        ar = ref() if ref is not None else None
        return default if ar is None else ar

    def items(self) -> List[Tuple[str, AsyncResult]]:
        return [(m, ar) for m, ar in ((m, ref()) for m, ref in list(self._refs.items())) if ar is not None]

    def values(self) -> List[AsyncResult]:
        return [ar for _, ar in self.items()]


def _weakly(client: Client, method: Callable[[Client], None]) -> Callable[[], None]:
    """``method(client)`` as a callback that does not keep `client` alive."""
    ref = weakref.ref(client)

    def call() -> None:
        target = ref()
        if target is not None:
            method(target)

    return call


@contextlib.contextmanager
def _main_module_not_rerun() -> Iterator[None]:
    """Start spawn/forkserver children without re-running the user's script.

    multiprocessing re-imports ``__main__`` in such children, which runs a script
    without an ``if __name__ == "__main__"`` guard a second time.  Engines and the
    Manager need nothing from it: functions travel by value with cloudpickle.
    """
    original = mp_spawn.get_preparation_data

    def preparation_data(name: str) -> Dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    mp_spawn.get_preparation_data = preparation_data
    try:
        yield
    finally:
        mp_spawn.get_preparation_data = original


class _ClusterState:
    """Everything close() must tear down, without a reference back to the Client."""

    def __init__(self, router: Router, line: Lifeline, queue: PublicationQueue, cluster_id: str) -> None:
        self.router = router
        self.lifeline = line
        self.queue = queue
        self.cluster_id = cluster_id
        self.drain: Optional[threading.Thread] = None
        self.store: Optional[DataStore] = None
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        router = self.router
        handles = list(router.engines.values())
        for h in handles:  # idle engines stop at once; busy ones are terminated
            if h.alive and not h.pending:
                h.send_task(STOP)
            elif h.alive:
                h.process.terminate()
        router.close()
        if self.drain is not None and self.drain is not threading.current_thread():
            self.drain.join(timeout=10)
        for h in handles:
            h.process.join(timeout=2)
            if h.process.exitcode is None:
                h.process.kill()
                h.process.join(timeout=2)
            h.alive = False
        if self.store is not None:
            self.store.shutdown()
        for h in handles:
            for conn in (h.tasks, h.control, h.events):
                conn.close()
            try:
                h.process.close()
            except ValueError:
                pass
        self.queue.close()
        self.lifeline.close()
        router.close_fds()
        router.spin_hint.close()
        sharedmem.sweep(self.cluster_id)


_live_states: weakref.WeakSet[_ClusterState] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    # Registered after multiprocessing's own exit hook, so it runs before it:
    # that hook would otherwise wait forever for engines that are still running.
    for state in list(_live_states):
        state.close()
