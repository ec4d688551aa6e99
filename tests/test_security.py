"""Security: nothing listens on the network, each cluster has its own secret,
and shared memory is private to the user."""

from __future__ import annotations

import os
import stat
import time
from typing import Iterator, List

import numpy as np
import psutil
import pytest
from conftest import LeakChecker, shm_segments, wait_for_manager

from localpar import Client
from localpar.datapub import publish_data
from localpar.wire import sharedmem

HANG_GUARD = 10.0


@pytest.fixture
def c() -> Iterator[Client]:
    with Client(2) as client:
        yield client


def publish_something() -> int:
    publish_data({"x": np.arange(10)})
    return os.getpid()


def inet_sockets(pid: int) -> List[str]:
    return [f"{s.laddr} -> {s.raddr} {s.status}" for s in psutil.Process(pid).net_connections(kind="inet")]


def test_no_process_of_the_cluster_has_an_inet_socket(c: Client) -> None:
    before = inet_sockets(os.getpid())
    assert c[:].apply_async(publish_something).get(timeout=HANG_GUARD)
    manager = wait_for_manager(c)
    assert c[:].apply_async(publish_something).get(timeout=HANG_GUARD)  # the engines used the Manager
    for pid in [*c.engine_pids().values(), manager]:
        assert inet_sockets(pid) == [], f"process {pid} has network sockets"
    assert inet_sockets(os.getpid()) == before  # the client opened none either


def test_each_cluster_has_its_own_authkey(leak_check: LeakChecker) -> None:
    with Client(1) as a:
        key_a = a._authkey
    with Client(1) as b:
        key_b = b._authkey
    assert len(key_a) >= 32 and len(key_b) >= 32
    assert key_a != key_b


def engine_authkey() -> bytes:
    import multiprocessing

    return bytes(multiprocessing.current_process().authkey)


def test_engines_use_the_cluster_authkey(c: Client) -> None:
    assert c[:].apply_async(engine_authkey).get(timeout=HANG_GUARD) == [c._authkey] * 2


def test_exported_segment_is_private_to_the_user(c: Client) -> None:
    ref = sharedmem.export(c.cluster_id, memoryview(b"secret" * 1000))
    try:
        mode = stat.S_IMODE(os.stat(os.path.join(sharedmem._SHM_DIR, ref.name)).st_mode)
        assert mode == 0o600, oct(mode)
    finally:
        sharedmem.unlink(ref.name)


def hold(arr: np.ndarray, seconds: float) -> float:
    publish_data({"holding": True})
    time.sleep(seconds)
    return float(arr.sum())


def test_segments_of_a_big_argument_in_flight_are_private(c: Client) -> None:
    big = np.ones(1 << 18)  # 2 MB: travels through shared memory
    ar = c[0].apply_async(hold, big, 0.5)
    deadline = time.monotonic() + HANG_GUARD
    while not ar.data:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    names = shm_segments(c.cluster_id, data_only=True)
    assert names, "a 2 MB argument should be in shared memory while its task runs"
    for name in names:
        try:
            mode = stat.S_IMODE(os.stat(os.path.join(sharedmem._SHM_DIR, name)).st_mode)
        except FileNotFoundError:
            continue
        assert mode == 0o600, f"{name}: {oct(mode)}"
    assert ar.get(timeout=HANG_GUARD) == float(1 << 18)
    assert not shm_segments(c.cluster_id, data_only=True)  # freed once the task is done


def publish_big_then_wait(seconds: float) -> None:
    publish_data({"big": np.ones(1 << 18)})  # 2 MB: travels through shared memory
    time.sleep(seconds)


def test_segments_of_a_big_publication_are_private(c: Client) -> None:
    ar = c[0].apply_async(publish_big_then_wait, 0.5)
    deadline = time.monotonic() + HANG_GUARD
    while not ar.data:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert ar.data["big"].shape == (1 << 18,)
    modes = {}
    for name in shm_segments(c.cluster_id):
        try:
            modes[name] = stat.S_IMODE(os.stat(os.path.join(sharedmem._SHM_DIR, name)).st_mode)
        except FileNotFoundError:
            continue  # already unlinked
    assert modes, "the published array should still be in shared memory while the client holds it"
    assert all(m == 0o600 for m in modes.values()), {n: oct(m) for n, m in modes.items()}
    ar.get(timeout=HANG_GUARD)
