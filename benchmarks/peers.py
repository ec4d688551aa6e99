"""One small adapter per tool, all with the same verbs.

    start(n)            create the cluster/pool and get a first no-op result back
    call(f, *args)      one call, waited for (the tool's apply/submit().result())
    noop(fn)            one sequential round trip of a no-op call (`fn`: which no-op, see notebook)
    submit_many(count, fn)  submit `count` no-op tasks, then gather them all
    map(count, fn)      the tool's own map of a no-op over `count` items
    array(nbytes)       a call returning a float64 array of `nbytes`
    payload_bytes(nbytes)  a call returning `bytes` of that size
    pids()              the worker processes' pids
    close()             shut everything down and wait for it

Tools that can stream data out of a running task also have
``publish_latencies(count, gap)`` (seconds from publication to the reader seeing
it) and ``publish_array(nbytes, kind)`` (seconds until a published array, or
``bytes`` with ``kind="bytes"``, is readable).
A tool whose package is missing is reported by ``missing()`` and skipped.
``notebook`` names the kinds of ``__main__`` no-op the suite measures for it
(the slow tools only have the module function, to keep the run short); ``map_items_max`` caps the
items of a map for tools that send one message per item.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import logging
import multiprocessing
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

from . import tasks
from .notebook import CLOSURE, LAMBDA, MAIN
from .stats import clock

_fork = multiprocessing.get_context("fork")
Fn = Optional[Callable[..., Any]]


def _noop(fn: Fn) -> Callable[..., Any]:
    return tasks.noop if fn is None else fn


def _poll_data(read: Any, until: float, stop: Any) -> None:
    """Call ``read()`` in a loop, as a user watching ``ar.data`` would, until ``stop()`` or `until`."""
    while not stop() and clock() < until:
        read()
        os.sched_yield()  # drops the GIL for an instant (clients with an I/O thread need it); time.sleep(0)
        # would also do, but costs ~85 µs of timer slack on Linux, which would be most of what is measured


class Peer:
    """The common interface; subclasses fill it in."""

    name = "?"
    module: Optional[str] = None  # the package that must be importable
    can_publish = False
    notebook: Tuple[str, ...] = ()  # which __main__ kinds to measure besides the module function (see notebook)
    map_items_max: Optional[int] = None

    @classmethod
    def missing(cls) -> Optional[str]:
        """Why this tool cannot run here, or None."""
        if cls.module is None:
            return None
        try:
            importlib.import_module(cls.module)
        except ImportError as exc:
            return f"{cls.module} is not installed ({exc}); pip install -e '.[bench]'"
        return None

    @classmethod
    def version(cls) -> str:
        if cls.module is None:
            return "stdlib"
        return str(getattr(importlib.import_module(cls.module), "__version__", "?"))

    def start(self, n: int) -> None:
        raise NotImplementedError

    def call(self, f: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def noop(self, fn: Fn = None) -> None:
        self.call(_noop(fn))

    def submit_many(self, count: int, fn: Fn = None) -> None:
        raise NotImplementedError

    def map(self, count: int, fn: Fn = None) -> None:
        raise NotImplementedError

    def array(self, nbytes: int) -> Any:
        return self.call(tasks.array, nbytes)

    def payload_bytes(self, nbytes: int) -> Any:
        return self.call(tasks.payload_bytes, nbytes)

    def pids(self) -> List[int]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def publish_latencies(self, count: int, gap: float) -> List[float]:
        raise NotImplementedError

    def publish_array(self, nbytes: int, kind: str = "array") -> float:
        raise NotImplementedError


class Localpar(Peer):
    name = "localpar"
    module = "localpar"
    can_publish = True
    notebook: Tuple[str, ...] = (MAIN, LAMBDA, CLOSURE)

    def __init__(self, balanced: bool = True) -> None:
        self.balanced = balanced

    def start(self, n: int) -> None:
        from localpar import Client

        self.client = Client(n)
        self.first = self.client[0]
        self.first.apply_sync(tasks.noop)

    def call(self, f: Callable[..., Any], *args: Any) -> Any:
        return self.first.apply_sync(f, *args)

    def submit_many(self, count: int, fn: Fn = None) -> None:
        f = _noop(fn)
        if self.balanced:
            view = self.client.load_balanced_view()
            ars = [view.apply_async(f, i) for i in range(count)]
        else:  # round-robin over DirectViews: tasks queue up on each engine
            views = [self.client[i] for i in self.client.ids]
            ars = [views[i % len(views)].apply_async(f, i) for i in range(count)]
        for ar in ars:
            ar.get(timeout=120)

    def map(self, count: int, fn: Fn = None) -> None:
        self.client[:].map_sync(_noop(fn), range(count))

    def map_balanced(self, count: int, fn: Fn = None) -> None:
        """``LoadBalancedView.map`` with its default chunksize (see ``localpar.client.view.auto_chunksize``)."""
        self.client.load_balanced_view().map_sync(_noop(fn), range(count))

    def pids(self) -> List[int]:
        return list(self.client.engine_pids().values())

    def close(self) -> None:
        self.client.close()

    def publish_latencies(self, count: int, gap: float) -> List[float]:
        ar = self.first.apply_async(tasks.localpar_publish_counter, count, gap)
        return _read_counter(lambda: ar.data, ar.done, count * gap + 30)

    def publish_array(self, nbytes: int, kind: str = "array") -> float:
        self.first.apply_sync(tasks.prepare_payload, nbytes, kind)  # made before the clock starts
        ar = self.first.apply_async(tasks.localpar_publish_array, nbytes, 0.05, kind)
        seconds = _read_published_array(lambda: ar.data)
        ar.get(timeout=60)
        return seconds


class LocalparDirect(Localpar):
    """localpar's submit-all through DirectViews, engine by engine in turn."""

    name = "localpar (DirectView)"
    can_publish = False
    notebook = (MAIN,)  # the other kinds are in localpar's row; this one is about the view

    def __init__(self) -> None:
        super().__init__(balanced=False)


def _read_counter(read: Any, done: Any, timeout: float) -> List[float]:
    """Poll published ``{'k', 't'}`` data; one latency per new ``k`` seen."""
    latencies: List[float] = []
    last = [None]

    def look() -> None:
        data = read()
        k = data.get("k")
        if k is not None and k != last[0]:
            latencies.append(clock() - data["t"])
            last[0] = k

    _poll_data(look, clock() + timeout, done)
    look()
    return latencies


def _read_published_array(read: Any, timeout: float = 120) -> float:
    """Poll until a published ``{'a': array, 't': sent}`` shows up; seconds since sent."""
    found: List[float] = []

    def look() -> None:
        data = read()
        if "a" in data and not found:
            found.append(clock() - data["t"])

    _poll_data(look, clock() + timeout, lambda: bool(found))
    if not found:
        raise TimeoutError("the published array never showed up")
    return found[0]


class Pool(Peer):
    name = "multiprocessing.Pool (fork)"
    notebook = (MAIN, LAMBDA, CLOSURE)

    def start(self, n: int) -> None:
        self.pool = _fork.Pool(n)
        self.pool.apply(tasks.noop)

    def call(self, f: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply(f, args)

    def submit_many(self, count: int, fn: Fn = None) -> None:
        f = _noop(fn)
        results = [self.pool.apply_async(f, (i,)) for i in range(count)]
        for r in results:
            r.get(timeout=120)

    def map(self, count: int, fn: Fn = None) -> None:
        self.pool.map(_noop(fn), range(count))

    def pids(self) -> List[int]:
        return [p.pid for p in self.pool._pool]  # type: ignore[attr-defined]

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class _Executor(Peer):
    """Anything with the concurrent.futures Executor API."""

    executor: Any
    map_items_max = 5000  # chunksize 1: one work item per element

    def make(self, n: int) -> Any:
        raise NotImplementedError

    def start(self, n: int) -> None:
        self.executor = self.make(n)
        self.executor.submit(tasks.noop).result()

    def call(self, f: Callable[..., Any], *args: Any) -> Any:
        return self.executor.submit(f, *args).result()

    def submit_many(self, count: int, fn: Fn = None) -> None:
        f = _noop(fn)
        futures = [self.executor.submit(f, i) for i in range(count)]
        for fut in futures:
            fut.result(timeout=120)

    def map(self, count: int, fn: Fn = None) -> None:
        list(self.executor.map(_noop(fn), range(count)))

    def pids(self) -> List[int]:
        return list(self.executor._processes)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class ProcessPool(_Executor):
    name = "ProcessPoolExecutor (fork)"
    notebook = (MAIN, LAMBDA, CLOSURE)

    def make(self, n: int) -> Any:
        return concurrent.futures.ProcessPoolExecutor(n, mp_context=_fork)


class Loky(_Executor):
    name = "loky"
    module = "loky"

    def make(self, n: int) -> Any:
        import loky

        return loky.ProcessPoolExecutor(max_workers=n)


class Ipyparallel(Peer):
    name = "ipyparallel"
    module = "ipyparallel"
    can_publish = True

    def start(self, n: int) -> None:
        import ipyparallel

        self.cluster = ipyparallel.Cluster(n=n, log_level=logging.ERROR)
        self.rc = self.cluster.start_and_connect_sync()
        self.first = self.rc[0]
        self.first.apply_sync(tasks.noop)

    def call(self, f: Callable[..., Any], *args: Any) -> Any:
        return self.first.apply_sync(f, *args)

    def submit_many(self, count: int, fn: Fn = None) -> None:
        f = _noop(fn)
        view = self.rc.load_balanced_view()
        ars = [view.apply_async(f, i) for i in range(count)]
        for ar in ars:
            ar.get(timeout=300)

    def map(self, count: int, fn: Fn = None) -> None:
        self.rc[:].map_sync(_noop(fn), range(count))

    def pids(self) -> List[int]:
        return list(self.rc[:].apply_sync(tasks.getpid))

    def close(self) -> None:
        self.rc.close()
        self.cluster.stop_cluster_sync()

    def publish_latencies(self, count: int, gap: float) -> List[float]:
        ar = self.first.apply_async(tasks.ipp_publish_counter, count, gap)
        latencies = _read_counter(lambda: ar.data, ar.ready, count * gap + 60)
        ar.get(timeout=60)
        return latencies

    def publish_array(self, nbytes: int, kind: str = "array") -> float:
        self.first.apply_sync(tasks.prepare_payload, nbytes, kind)
        ar = self.first.apply_async(tasks.ipp_publish_array, nbytes, 0.05, kind)
        seconds = _read_published_array(lambda: ar.data)
        ar.get(timeout=120)
        return seconds


class Dask(Peer):
    name = "dask.distributed"
    module = "distributed"
    can_publish = True
    map_items_max = 5000  # one task per item through the scheduler

    def start(self, n: int) -> None:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            processes=True, n_workers=n, threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR
        )
        self.client = Client(self.cluster)
        self.client.submit(tasks.noop, pure=False).result()

    def call(self, f: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(f, *args, pure=False).result()

    def submit_many(self, count: int, fn: Fn = None) -> None:
        f = _noop(fn)
        futures = [self.client.submit(f, i, pure=False) for i in range(count)]
        self.client.gather(futures)

    def map(self, count: int, fn: Fn = None) -> None:
        self.client.gather(self.client.map(_noop(fn), range(count), pure=False))

    def pids(self) -> List[int]:
        return list(self.client.run(tasks.getpid).values())

    def close(self) -> None:
        self.client.close()
        self.cluster.close()

    def publish_latencies(self, count: int, gap: float) -> List[float]:
        """``log_event`` on the worker, ``subscribe_topic`` here; the handler keeps the latest."""
        topic = f"bench-{time.monotonic_ns()}"
        latest: Dict[str, Any] = {}
        self.client.subscribe_topic(topic, lambda event: latest.update(event[1]))
        try:
            future = self.client.submit(tasks.dask_publish_counter, count, gap, topic, pure=False)
            latencies = _read_counter(lambda: dict(latest), future.done, count * gap + 60)
            future.result(timeout=60)
        finally:
            self.client.unsubscribe_topic(topic)
        return latencies


ALL: List[Type[Peer]] = [Localpar, LocalparDirect, Pool, ProcessPool, Loky, Ipyparallel, Dask]
