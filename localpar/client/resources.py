"""What a cluster owns and ``close()`` tears down, and the helper threads it runs after an engine dies.

`ClusterResources` holds no reference back to the `Client`, so the Client can be garbage-collected
(and then closed by its finalizer) while these stay reachable for the teardown.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Iterable, List, Optional

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
        with ``restart_dead``, or killed over the memory limit; not one retired on purpose."""
        return (self.restart_dead or handle.death_reason is not None) and not handle.retired and not self.closed

    def after_death(self, handle: EngineHandle) -> None:
        """The collector saw `handle` die: in a helper thread, replace it if wanted, then end
        what its tasks started (found by their mark: its tree is gone, see ``proctree``)."""
        replace = self.replace if self.will_replace(handle) else None

        def run() -> None:
            if replace is not None:
                replace(handle)
            end_tree(proctree.scan(marks=[f"{self.cluster_id}:{handle.pid}"]))

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
        if os.getpid() != self.owner_pid:
            return  # a forked child's exit hook: the engines are its parent's
        with self._lock:
            if self.closed:
                return
            self.closed = True
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
        ended = tree + proctree.scan(marks=[f"{self.cluster_id}:"])
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
