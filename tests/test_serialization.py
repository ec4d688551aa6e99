"""One serialization path: cloudpickle, big buffers out of band, errors that name the object."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from localpar import SerializationError
from localpar.wire import serialization, sharedmem
from localpar.wire.serialization import SHM_THRESHOLD, call_parts, dumps, find_unpicklable, loads, segments_of


def test_closures_and_lambdas_roundtrip():
    k = 3
    f = loads(dumps(lambda x: x * k, "s1")[0])
    assert f(2) == 6


def test_big_buffers_go_to_shared_memory_small_ones_stay_inline():
    small, big = np.arange(10.0), np.ones(SHM_THRESHOLD // 8 + 1)
    message, segments = dumps({"small": small, "big": big}, "s2")
    assert len(segments) == 1 and segments == segments_of(message)
    assert len(message) < SHM_THRESHOLD
    value = loads(message)
    np.testing.assert_array_equal(value["small"], small)
    np.testing.assert_array_equal(value["big"], big)
    assert value["big"].flags.writeable


def test_unpicklable_object_is_named():
    with pytest.raises(SerializationError, match="cannot pickle the thing.*lock"):
        dumps(threading.Lock(), "s3", what="the thing")


def test_find_unpicklable_names_the_argument():
    def f(a, b):
        return a

    culprit = find_unpicklable(call_parts(f, (1, threading.Lock()), {}))
    assert culprit is not None and culprit.startswith("argument 1 of")
    assert find_unpicklable(call_parts(f, (1, 2), {"z": 3})) is None


def test_unloadable_message_is_a_serialization_error():
    message, _ = dumps(1, "s4")
    with pytest.raises(SerializationError, match="cannot unpickle the result"):
        loads(message[:-2], what="the result")


def test_a_module_level_function_is_pickled_once_a_closure_every_time(monkeypatch):
    from localpar.wire import serialization

    calls = []
    real = serialization.dumps
    monkeypatch.setattr(serialization, "dumps", lambda obj, *a, **k: calls.append(obj) or real(obj, *a, **k))
    monkeypatch.setattr(serialization, "_by_reference", serialization.weakref.WeakKeyDictionary())
    first, _ = serialization.dumps_call(find_unpicklable, (1,), {}, "s5")
    second, _ = serialization.dumps_call(find_unpicklable, (1,), {}, "s5")
    assert first == second
    assert sum(1 for c in calls if isinstance(c, tuple) and c[0] is find_unpicklable) == 1

    counter = {"n": 0}

    def by_value():
        return counter["n"]

    serialization.dumps_call(by_value, (), {}, "s5")
    counter["n"] = 1  # captured state may change between calls: it must be pickled again
    message, _ = serialization.dumps_call(by_value, (), {}, "s5")
    (fsize,) = serialization.CALL_FUNCTION_SIZE.unpack_from(message)
    f, _ = loads(message[serialization.CALL_FUNCTION_SIZE.size : serialization.CALL_FUNCTION_SIZE.size + fsize])
    assert f() == 1


class _Holder:
    def __init__(self, payload):
        self.payload = payload


@pytest.mark.parametrize(
    "value",
    [
        bytes(range(256)) * 1024,
        bytearray(b"z" * SHM_THRESHOLD),
        {"nested": [1, (b"q" * 300_000, "s")]},
        memoryview(np.arange(100_000.0)),
        memoryview(np.arange(120_000, dtype=np.int32).reshape(300, 400)),
        memoryview(b"r" * 300_000),
        memoryview(np.arange(200_000.0))[::2],  # not contiguous: sent as a copy
        _Holder(b"h" * 300_000),  # anywhere in an object cloudpickle pickles
    ],
    ids=[
        "bytes",
        "bytearray",
        "nested-bytes",
        "memoryview",
        "memoryview-2d",
        "memoryview-readonly",
        "strided",
        "attribute",
    ],
)
def test_big_bytes_bytearrays_and_memoryviews_travel_through_shared_memory(value):
    message, segments = dumps(value, "s9")
    try:
        assert segments and len(message) < 2_000
        back = loads(message)
    finally:
        for ref in segments:
            sharedmem.unlink(ref.name)
    assert type(back) is type(value)
    if isinstance(value, memoryview):
        assert (back.format, back.shape, back.tobytes()) == (value.format, value.shape, value.tobytes())
        assert back.readonly == value.readonly or not value.contiguous
    elif isinstance(value, _Holder):
        assert back.payload == value.payload
    else:
        assert back == value


def test_small_bytes_stay_in_the_message_and_on_the_fast_path():
    small = b"s" * (SHM_THRESHOLD - 1)
    assert serialization.plain_data(small) == serialization.SCALARS_ONLY
    assert serialization.plain_data([small, b"t" * SHM_THRESHOLD]) == serialization.WITH_BYTES
    message, segments = dumps({"a": small}, "s10")
    assert segments == [] and loads(message) == {"a": small}


def test_bytes_rebuilt_from_a_pooled_segment_release_it_at_once():
    pool = sharedmem.SegmentPool("s11")
    try:
        message, segments = dumps([b"p" * 300_000, np.ones(100_000)], "s11", pool=pool)
        released = []
        value = loads(message, on_release=released.append)
        assert value[0] == b"p" * 300_000
        assert [r for r in segments if r.at >= 0] == released  # copied out: the array's stays in use
    finally:
        pool.close()


def _thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "unknown"


def _huge_kib_around(address):
    """AnonHugePages of the mapping that holds `address`, from /proc/self/smaps."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= address < end
            elif inside and head == "AnonHugePages:":
                return int(line.split()[1])
    return 0


@pytest.mark.skipif(_thp_mode() == "never", reason="transparent huge pages are off on this machine")
def test_big_bytes_are_rebuilt_on_huge_pages():
    message, segments = dumps(b"h" * (32 << 20), "s12")
    try:
        value = loads(message)
    finally:
        for ref in segments:
            sharedmem.unlink(ref.name)
    assert _huge_kib_around(id(value) + len(value) // 2) > 0  # id() is the object's address in CPython
