"""One serialization path: cloudpickle, big buffers out of band, errors that name the object."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from localpar import SerializationError
from localpar.serialization import SHM_THRESHOLD, call_parts, dumps, find_unpicklable, loads, segments_of


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
    from localpar import serialization

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
