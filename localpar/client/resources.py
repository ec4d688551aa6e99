"""What a cluster owns and ``close()`` tears down, and the helper threads it runs after an engine dies.

`ClusterResources` holds no reference back to the `Client`, so the Client can be garbage-collected
(and then closed by its finalizer) while these stay reachable for the teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from ..errors import ClientClosedError
from ..processes import clusters, limits, proctree
from ..processes.lifeline import Lifeline
from ..processes.spin import SpinHint
from ..wire import sharedmem
from ..wire.pubqueue import PublicationQueue
from . import memory
from .balancer import Balancer
from .collector import Collector
from .datastore import DataStore
from .handles import EngineHandle
from .ledger import Ledger
from .restarts import Plan, RestartPolicy


class ClusterResources:
    """Everything close() must tear down, without a reference back to the Client.

    It belongs to the process that made it: in a process forked from that one
    (the user's ``os.fork()``, an engine started by fork), the client-side ends
    are closed at once (so that, e.g., the lifeline still breaks when the owner
    dies) and the client refuses to be used or to close the owner's engines.
    """

    def __init__(
        self,
        cluster_id: str,
        ledger: Ledger,
        collector: Collector,
        balancer: Balancer,
        lifeline: Lifeline,
        queue: PublicationQueue,
        spin_hint: SpinHint,
        start_lock: threading.Lock,
        restart_dead: bool,
    ) -> None:
        self.owner_pid = os.getpid()
        self.cluster_id = cluster_id
        self.ledger = ledger
        self.collector = collector
        self.balancer = balancer
        self.lifeline = lifeline
        self.queue = queue
        self.spin_hint = spin_hint
        self.store: Optional[DataStore] = None  # guarded by _lock
        self.store_starter: Optional[threading.Thread] = None
        self.closed = False  # guarded by _lock
        self._lock = threading.Lock()
        self.start_lock = start_lock  # close() waits on it for an engine being started
        self.restart_dead = restart_dead
        self.replace: Optional[Callable[[EngineHandle], None]] = None  # Client._replace_dead, weakly
        self.memory_watch: Optional[memory.MemoryWatch] = None  # its own thread; stopped by close()
        self.helpers: List[threading.Thread] = []  # after-death and tree-ending threads; guarded by _lock
        self.restarts = RestartPolicy()  # when a dead engine is replaced (see ``restarts``)
        self._plans: Dict[EngineHandle, Plan] = {}  # from note_death to after_death; guarded by _lock
        self._closing = threading.Event()  # set by close(): ends the back-off waits at once

    def check_usable(self) -> None:
        if os.getpid() != self.owner_pid:
            raise ClientClosedError(
                f"this Client belongs to process {self.owner_pid}; a forked child cannot use it: make a new Client"
            )
        if self.closed or self.ledger.closed:
            raise ClientClosedError("this Client is closed")

    def start_datastore(self, start: Callable[[], None]) -> None:
        """Run `start` in a thread of its own, once, unless closed; called by the collector,
        so it never raises: a thread that cannot start is the Manager's error."""
        thread = threading.Thread(target=start, name=f"localpar-manager-start-{self.cluster_id}", daemon=True)
        with self._lock:
            if self.closed or self.store_starter is not None:
                return
            try:
                thread.start()
            except RuntimeError as exc:  # no thread to be had (ulimit -u)
                why = limits.process_limit_error("the thread that starts the Manager", exc).strerror
                self.collector.store_error = f"the Manager process could not start: {why}"
                return
            self.store_starter = thread  # only once started: close() joins it

    def adopt_store(self, store: DataStore) -> bool:
        """Keep the started Manager for close(); False if the cluster closed meanwhile."""
        with self._lock:
            if self.closed:
                return False
            self.store = store
            return True

    def will_replace(self, handle: EngineHandle) -> bool:
        """Whether a dead `handle` is (or will be) replaced by a new engine with its id:
        with ``restart_dead``, or killed over the memory limit; not one retired on purpose,
        nor one the restart policy gave up on."""
        wanted = (self.restart_dead or handle.death_reason is not None) and not handle.retired
        return wanted and not self.closed and not self.restarts.gave_up_on(handle.id)

    def note_death(self, handle: EngineHandle) -> Optional[str]:
        """The collector saw `handle` die (before it fails its tasks): decide whether and when it
        is replaced; what its tasks' EngineError must add (that it will not be), or None."""
        wanted = (self.restart_dead or handle.death_reason is not None) and not handle.retired
        if not wanted or self.closed:
            return None
        plan = self.restarts.after_death(handle.id, time.monotonic() - handle.started)
        with self._lock:
            self._plans[handle] = plan
        if plan.given_up is not None:
            warnings.warn(f"localpar: {plan.given_up}", RuntimeWarning, stacklevel=1)
        return plan.given_up

    def after_death(self, handle: EngineHandle) -> None:
        """The collector saw `handle` die: in a helper thread, replace it if planned (after the
        plan's back-off, cut short by close()), and end what its tasks started (its tree is
        gone: found by their mark and in its process group, see ``proctree``).
        Called before the dead engine's tasks fail: a planned replacement is in the ledger's
        `replacing` from here until it is in `engines` (or could not start, or close() ends the wait)."""
        with self._lock:
            plan = self._plans.pop(handle, None)
        replace = self.replace if plan is not None and plan.given_up is None else None
        marks, groups = [f"{self.cluster_id}:{handle.pid}"], led_groups([handle])
        if replace is not None:
            self.ledger.replacement_coming(handle.id)

        def run() -> None:
            if replace is None:
                end_tree(proctree.scan(marks=marks, groups=groups))
                return
            try:
                if plan is not None and plan.delay > 0:
                    end_tree(proctree.scan(marks=marks, groups=groups))  # first: the replacement waits
                    if not self._closing.wait(plan.delay):
                        replace(handle)
                    return
                replace(handle)
            finally:
                self.ledger.replacement_done(handle.id)
                self.balancer.schedule()  # queued tasks go to it, or fail if it could not start
            end_tree(proctree.scan(marks=marks, groups=groups))

        self._helper(run, f"localpar-after-death-{self.cluster_id}-{handle.id}")

    def end_in_background(self, processes: List[Any]) -> None:
        """TERM, grace, KILL `processes` without making the caller wait."""

        def run() -> None:
            end_tree(processes)

        if processes:
            self._helper(run, f"localpar-end-tree-{self.cluster_id}")

    def _helper(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            if self.closed:  # close() ends every marked process itself
                return
            self.helpers = [t for t in self.helpers if t.is_alive()]
            try:
                thread.start()
            except RuntimeError:  # no thread to be had (ulimit -u): do it here, late rather than never
                started = False
            else:
                started = True
                self.helpers.append(thread)  # close() joins only threads that started
        if not started:
            target()

    def forked(self) -> None:
        """In a forked child: close the client's ends, touch nothing else (locks may be held).

        Once only: a grandchild (a cluster a task opened forks its own engines) inherits the
        closed state, and must not close again descriptor numbers reused meanwhile.
        """
        if os.getpid() == self.owner_pid or self.closed:
            return
        self.closed = True  # the child has one thread: no lock needed
        clusters.discard(self)
        self.lifeline.close_writer()
        for handle in list(self.ledger.engines.values()):
            handle.close_in_child()
        self.queue.close_reader()
        self.ledger.doorbell.close()

    def close(self) -> None:
        """Tear the cluster down; idempotent.  A Ctrl-C meanwhile (SIGINT in the main thread)
        waits until the teardown is done, then is raised: interrupted half-way, engines that
        ignore SIGTERM would be left running for multiprocessing's exit join() to wait on
        forever, and the shared memory left behind."""
        if os.getpid() != self.owner_pid:
            return  # a forked child's exit hook: the engines are its parent's
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self._closing.set()  # a back-off wait ends now: nothing is replaced
        with _sigint_deferred():
            self._teardown()

    def _teardown(self) -> None:
        clusters.discard(self)
        if self.memory_watch is not None:
            self.memory_watch.stop()
        with self.start_lock:  # an engine being started (a replacement) is in the ledger once this returns
            pass
        ledger = self.ledger
        ledger.close()
        handles = list(ledger.engines.values())
        # What the engines' tasks started, found while the engines live (see proctree); idle
        # engines end their own on STOP, but a busy one is terminated and cannot.
        tree = proctree.scan([h.pid for h in handles if h.alive]) if handles else []
        for h in handles:  # idle engines stop at once; busy ones are terminated
            if h.alive and not h.pending:
                h.send_stop()
            elif h.alive:
                h.process.terminate()
        self.collector.stop()  # fails what is pending with ClientClosedError
        self.balancer.close("the client was closed")  # and what waits for an engine
        _end_processes([h.process for h in handles], [h.death_fd for h in handles if h.alive])
        ended = tree + proctree.scan(marks=[f"{self.cluster_id}:"], groups=led_groups(handles))
        end_tree(ended, made_by=[h.pid for h in handles])
        for thread in self.helpers:  # no new ones: closed is set
            if thread is not threading.current_thread():
                thread.join(timeout=2 * proctree.GRACE + 1)
        if self.store_starter is not None and self.store_starter is not threading.current_thread():
            self.store_starter.join(timeout=30)  # the store it started is shut down just below
        with self._lock:
            store = self.store
        if store is not None:
            store.shutdown()
        for h in handles:
            h.alive = False
            h.close()
            try:
                h.process.close()
            except ValueError:
                pass  # still running after kill(): left to multiprocessing's reaper
        self.queue.close()
        self.lifeline.close()
        ledger.doorbell.close()
        self.spin_hint.close()
        sharedmem.sweep(self.cluster_id)


def end_tree(processes: List[Any], made_by: Iterable[int] = ()) -> None:
    """End `processes` (TERM, grace, KILL), then remove the shared memory that they, or the
    already ended processes `made_by`, made: in any cluster, since a cluster that a task
    opened and left open names its segments after the engine it ran in, and an engine
    TERMed before it saw its client go could not remove its own."""
    survivors = {p.pid for p in proctree.end(processes)}
    sharedmem.sweep_made_by([*made_by, *(p.pid for p in processes if p.pid not in survivors)])


def led_groups(handles: Iterable[EngineHandle]) -> List[int]:
    """The process groups these engines led: each engine leads its own session from its
    start, and says Ready after that (see ``proctree``); an engine not yet ready led none
    for sure, so its pid names no group of ours."""
    return [h.pid for h in handles if h.ready]


ENGINE_EXIT_GRACE = 2.0  # seconds engines get to stop before they are killed


def _end_processes(processes: List[Any], death_fds: List[int]) -> None:
    """Wait for all of them at once; kill what is still running after the grace period."""
    from multiprocessing.connection import wait

    def still_running(timeout: float) -> List[int]:
        fds = list(death_fds)
        deadline = time.monotonic() + timeout
        while fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for fd in wait(fds, remaining):
                fds.remove(fd)  # type: ignore[arg-type]
        return fds

    if still_running(ENGINE_EXIT_GRACE):
        for p in processes:
            if p.exitcode is None:
                p.kill()
        still_running(ENGINE_EXIT_GRACE)
    for p in processes:
        p.join(timeout=0.1 if p.exitcode is not None else ENGINE_EXIT_GRACE)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """SIGINT waits while the block runs (main thread only; elsewhere none is delivered to
    Python code), then goes to the handler that was in place: by default a KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: List[Any] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, caught[0])
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)
