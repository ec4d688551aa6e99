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
