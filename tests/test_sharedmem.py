"""Shared-memory segments: private, swept, and reused by the sender's pool."""

from __future__ import annotations

import gc
import os
import stat

import numpy as np

from localpar import sharedmem
from localpar.sharedmem import SegmentPool


def shm_names(cluster_id):
    return sorted(n for n in os.listdir(sharedmem._SHM_DIR) if n.startswith(sharedmem.prefix(cluster_id)))


def test_export_attach_roundtrip_is_private_and_copy_on_write():
    data = np.arange(1000.0)
    ref = sharedmem.export("t1", memoryview(data))
    try:
        mode = os.stat(os.path.join(sharedmem._SHM_DIR, ref.name)).st_mode
        assert stat.S_IMODE(mode) == 0o600
        view = sharedmem.attach(ref)
        array = np.frombuffer(view, dtype=np.float64)
        np.testing.assert_array_equal(array, data)
        array[0] = -1.0  # writable, and private to this mapping
        np.testing.assert_array_equal(np.frombuffer(sharedmem.attach(ref), dtype=np.float64), data)
    finally:
        sharedmem.unlink(ref.name)
    assert shm_names("t1") == []


def test_sweep_removes_a_cluster_or_one_process():
    a = sharedmem.export("t2", memoryview(b"x" * 10))
    b = sharedmem.export("t2", memoryview(b"y" * 10))
    assert sharedmem.sweep("t2", pid=os.getpid() + 1) == 0
    assert sharedmem.sweep("t2") == 2
    assert shm_names("t2") == [] and a.name != b.name


def test_pool_reuses_a_released_segment_and_closes_all():
    pool = SegmentPool("t3")
    first = pool.export(memoryview(np.ones(1000)))
    second = pool.export(memoryview(np.ones(1000)))
    assert first.pooled and first.name != second.name  # the first is still in use
    pool.release(first.name)
    third = pool.export(memoryview(np.full(900, 2.0)))
    assert third.name == first.name
    np.testing.assert_array_equal(np.frombuffer(sharedmem.attach(third), dtype=np.float64)[:900], 2.0)
    pool.close()
    assert shm_names("t3") == []


def test_loads_reports_a_pooled_segment_once_its_array_is_garbage():
    from localpar.serialization import dumps, loads

    pool = SegmentPool("t4")
    try:
        message, segments = dumps({"a": np.ones(200_000)}, "t4", pool=pool)
        assert [s.pooled for s in segments] == [True]
        released = []
        value = loads(message, on_release=released.append)
        assert value["a"].sum() == 200_000 and released == []
        assert shm_names("t4") == [segments[0].name]  # the sender's: not unlinked by the receiver
        del value
        gc.collect()
        assert released == segments
    finally:
        pool.close()
