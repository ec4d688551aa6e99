"""Shared-memory segments: private, swept, and reused by the sender's pool."""

from __future__ import annotations

import errno
import gc
import os
import stat
import warnings

import numpy as np
import pytest

from localpar.wire import sharedmem
from localpar.wire.sharedmem import SegmentPool


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
    from localpar.wire.serialization import dumps, loads

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


def _no_room(fd, nbytes):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_shm_dir_is_an_error_naming_it_and_its_free_space_and_leaves_no_file(monkeypatch):
    monkeypatch.setattr(sharedmem, "reserve", _no_room)
    for make in (
        lambda: SegmentPool("t5").export(memoryview(np.ones(1000))),
        lambda: sharedmem.export("t5", memoryview(b"x" * 100)),
    ):
        with pytest.raises(sharedmem.SharedMemoryFull, match=f"{sharedmem._SHM_DIR} is full: .* needed, .* free of "):
            make()
    assert shm_names("t5") == []


def test_a_new_segment_has_its_space_reserved_before_it_is_written(monkeypatch):
    reserved = []
    real = sharedmem.reserve
    monkeypatch.setattr(sharedmem, "reserve", lambda fd, n: (reserved.append(n), real(fd, n)))
    pool = SegmentPool("t6")
    try:
        pool.export(memoryview(np.ones(1000)))
        sharedmem.unlink(sharedmem.export("t6", memoryview(b"x" * 100)).name)
        assert reserved == [8000, 100]
    finally:
        pool.close()


def test_dumps_keeps_big_buffers_in_the_message_when_shared_memory_is_full_and_warns_once(monkeypatch):
    from localpar.wire.serialization import dumps, loads

    monkeypatch.setattr(sharedmem, "reserve", _no_room)
    monkeypatch.setattr(sharedmem, "_warned_full", False)
    value = {"a": np.arange(100_000.0), "b": b"y" * 200_000}
    with pytest.warns(RuntimeWarning, match="is full.*free.*through the pipe instead"):
        message, segments = dumps(value, "t7")
    assert segments == [] and len(message) > 1_000_000
    back = loads(message)
    np.testing.assert_array_equal(back["a"], value["a"])
    assert back["b"] == value["b"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dumps(value, "t7")  # once per process
    assert shm_names("t7") == []


def test_trim_unlinks_the_oldest_free_segments_down_to_the_bound():
    pool = SegmentPool("t8")
    try:
        refs = [pool.export(memoryview(np.ones(n))) for n in (1000, 2000, 3000)]
        for ref in refs:
            pool.release(ref.name)
        assert pool.free_bytes == 48_000
        pool.trim(30_000)
        assert shm_names("t8") == [refs[2].name] and pool.free_bytes == 24_000
        pool.trim(0)
        assert shm_names("t8") == []
    finally:
        pool.close()
