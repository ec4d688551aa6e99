"""Big bytes-like values travel through shared memory; an idle engine gives its segments back."""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest

from localpar import Client
from localpar.wire import sharedmem

MB = 1 << 20
BOUND = getattr(sharedmem.SegmentPool, "IDLE_KEEP_BYTES", 32 * MB)


@pytest.fixture(scope="module")
def c():
    with Client(1) as client:
        yield client


def engine_segment_bytes(c) -> int:
    """What the engine's segment files hold now."""
    (pid,) = c.engine_pids().values()
    start = f"{sharedmem.prefix(c.cluster_id)}{pid}-"
    total = 0
    for name in os.listdir(sharedmem._SHM_DIR):
        if name.startswith(start):
            try:
                total += os.stat(os.path.join(sharedmem._SHM_DIR, name)).st_size
            except FileNotFoundError:
                pass
    return total


def big_values(n):
    return bytes(range(256)) * (n // 256), bytearray(b"b" * n), memoryview(np.arange(n // 8, dtype=np.float64))


def return_bytes(n):
    return big_values(n)[0]


def publish_and_return(n, echo):
    from localpar.datapub import publish_data

    data, array, view = big_values(n)
    publish_data({"bytes": data, "bytearray": array, "memoryview": view})
    return echo


def test_big_bytes_bytearray_and_memoryview_results_publications_and_arguments_arrive_whole(c):
    data, array, view = big_values(2 * MB)
    v = c[0]
    assert v.apply_sync(return_bytes, 2 * MB) == data
    ar = v.apply_async(publish_and_return, 2 * MB, [data, array])
    assert ar.get(timeout=30) == [data, array]
    got = ar.data
    assert (got["bytes"], got["bytearray"]) == (data, array) and type(got["bytearray"]) is bytearray
    assert type(got["memoryview"]) is memoryview and got["memoryview"].tobytes() == view.tobytes()
    assert got["memoryview"].format == "d"


def test_a_big_bytes_result_comes_through_the_engines_segment_pool(c):
    before = engine_segment_bytes(c)
    assert c[0].apply_sync(return_bytes, 4 * MB) == big_values(4 * MB)[0]
    assert engine_segment_bytes(c) >= before + 4 * MB  # kept for reuse, not pickled into the pipe


def publish_many(count, nbytes):
    from localpar.datapub import publish_data

    for i in range(count):
        publish_data({f"a{i}": np.full(nbytes // 8, float(i))})


def test_an_idle_engine_gives_free_segments_back_without_another_task():
    with Client(1) as c:
        ar = c[0].apply_async(publish_many, 6, 8 * MB)
        ar.get(timeout=30)
        assert ar.data["a5"][0] == 5.0
        assert engine_segment_bytes(c) >= 48 * MB  # the client holds every array
        del ar
        gc.collect()  # the arrays are gone: the engine hears it and, idle, trims its pool
        deadline = time.monotonic() + 10
        while engine_segment_bytes(c) > BOUND and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine_segment_bytes(c) <= BOUND
        assert c[0].apply_sync(return_bytes, MB) == big_values(MB)[0]  # and it still works
