"""Shared test helpers: the `slow` marker and the `leak_check` fixture.

``leak_check`` snapshots what a cluster could leave behind in this process (child
processes, threads, open file descriptors, /dev/shm segments of clusters started
during the test) and asserts after the test that nothing was added.  Processes
and descriptors get a short grace period to disappear, because a closed engine
is reaped asynchronously by the kernel.
"""

from __future__ import annotations

import gc
import glob
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Set, Tuple

import psutil
import pytest

SHM_DIR = "/dev/shm"
GRACE = 5.0
HANG_GUARD = 10.0  # seconds: a bound on waits that should take far less, so a bug fails instead of hanging


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long load or leak test (still run by CI)")


def pid_gone(pid: int) -> bool:
    """True if `pid` no longer runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_pids_gone(pids: Iterable[int], timeout: float = 5.0) -> List[int]:
    """Poll until every pid is gone; returns those still alive after `timeout`."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        pending = [p for p in pending if not pid_gone(p)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.05)


CHILD_CLIENT_PRELUDE = """
import os, sys, time
import numpy as np
from localpar import Client
from localpar.datapub import publish_data

def publish_then_wait(arr):
    publish_data({"running": True})
    while True:
        time.sleep(0.05)

def start_busy_task(c, deadline):
    \"\"\"A running task whose 2 MB argument lives in shared memory.\"\"\"
    ar = c[0].apply_async(publish_then_wait, np.ones(1 << 18))
    while not ar.data and time.monotonic() < deadline:
        time.sleep(0.02)
    return ar

c = Client(2)
deadline = time.monotonic() + 10
c[0].apply_sync(publish_data, {"first": "publication"})  # which starts the Manager
while c.manager_pid is None and time.monotonic() < deadline:
    time.sleep(0.02)
c[:].apply_sync(os.getpid)
"""
"""The start of a child-process script: a Client(2) with its Manager up, and `start_busy_task`."""


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A 2-engine cluster shared by one test module."""
    from localpar import Client

    with Client(2) as c:
        yield c


def wait_for_file(path: str, limit: float = 20.0) -> str:
    """Run on an engine: return once `path` exists (the test creates it to release the task)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return path


def wait_for_manager(c: Any, timeout: float = 10.0) -> int:
    """The pid of the cluster's Manager process, started by a first publication."""
    from localpar.datapub import publish_data

    c[c.ids[0]].apply_sync(publish_data, {"first": "publication"})
    deadline = time.monotonic() + timeout
    while c.manager_pid is None:
        assert time.monotonic() < deadline, "the Manager process did not start"
        time.sleep(0.02)
    return int(c.manager_pid)


def shm_segments(cluster_id: str = "", data_only: bool = False) -> Set[str]:
    """Names of localpar segments in /dev/shm (of one cluster if `cluster_id`).

    With `data_only`, leave out the cluster's spin hint, which lives as long as the cluster.
    """
    from localpar.processes.spin import SPIN_HINT_LABEL

    pattern = f"localpar-{cluster_id}-*" if cluster_id else "localpar-*"
    names = {os.path.basename(p) for p in glob.glob(os.path.join(SHM_DIR, pattern))}
    return {n for n in names if not n.endswith(f"-{SPIN_HINT_LABEL}")} if data_only else names


def _multiprocessing_helpers() -> Tuple[Set[int], Set[int]]:
    """Pids and fds of multiprocessing's own long-lived helpers (forkserver, resource tracker).

    They start on first use of the forkserver start method and live until exit by design.
    """
    pids: Set[int] = set()
    fds: Set[int] = set()
    try:
        from multiprocessing import forkserver, resource_tracker

        for helper, pid_attr, fd_attr in [
            (forkserver._forkserver, "_forkserver_pid", "_forkserver_alive_fd"),
            (resource_tracker._resource_tracker, "_pid", "_fd"),
        ]:
            pid, fd = getattr(helper, pid_attr, None), getattr(helper, fd_attr, None)
            if pid:
                pids.add(pid)
            if fd is not None:
                fds.add(fd)
    except Exception:
        pass
    return pids, fds


def open_fds() -> Dict[int, str]:
    """This process's open descriptors and what they point to (pipe:[inode], a path...)."""
    fds: Dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the descriptor listdir itself used, already closed
    return fds


@dataclass
class Snapshot:
    children: Set[int]
    threads: Set[threading.Thread]
    fds: Dict[int, str]
    shm: Set[str]


class LeakChecker:
    """Records the clusters a test starts and compares process state before/after."""

    def __init__(self) -> None:
        self.cluster_ids: Set[str] = set()
        self.me = psutil.Process()

    def snapshot(self) -> Snapshot:
        gc.collect()  # what earlier tests left unreferenced must not blur the comparison
        children = {p.pid for p in self.me.children(recursive=True)}
        return Snapshot(children, set(threading.enumerate()), open_fds(), shm_segments())

    def added(self, before: Snapshot) -> List[str]:
        """Human-readable list of what exists now and did not before.

        The snapshot collects garbage first: a closed client's Python objects may sit
        in a reference cycle, and only an open client may hold OS resources.
        """
        now = self.snapshot()
        problems: List[str] = []
        helper_pids, helper_fds = _multiprocessing_helpers()
        new_children = now.children - before.children - helper_pids
        for pid in sorted(new_children):
            try:
                p = psutil.Process(pid)
                problems.append(f"child process {pid} ({p.name()}, {p.status()}): {' '.join(p.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                pass
        problems += [f"thread {t.name!r}" for t in now.threads - before.threads if t.is_alive()]
        new_fds = {
            fd: target for fd, target in now.fds.items() if before.fds.get(fd) != target and fd not in helper_fds
        }
        if new_fds:
            problems.append(f"{len(new_fds)} new open fds: {new_fds}")
        ours = {s for s in now.shm - before.shm if any(s.startswith(f"localpar-{c}-") for c in self.cluster_ids)}
        problems += [f"shm segment {s}" for s in sorted(ours)]
        return problems

    def assert_clean(self, before: Snapshot, grace: float = GRACE) -> None:
        deadline = time.monotonic() + grace
        while True:
            problems = self.added(before)
            if not problems or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        assert not problems, "left behind: " + "; ".join(problems)


@pytest.fixture
def leak_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[LeakChecker]:
    """Fail the test if it leaves a child process, thread, fd or shm segment behind."""
    from localpar.client import client as client_module

    checker = LeakChecker()
    real_init = client_module.Client.__init__

    def recording_init(self: client_module.Client, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)
        checker.cluster_ids.add(self.cluster_id)

    monkeypatch.setattr(client_module.Client, "__init__", recording_init)
    before = checker.snapshot()
    yield checker
    checker.assert_clean(before)


@pytest.fixture
def pids_gone() -> Callable[..., List[int]]:
    """``pids_gone(pids, timeout)``: wait until the pids exit; returns the survivors."""
    return wait_pids_gone
