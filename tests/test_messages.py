"""Envelopes: every kind of message crosses the pipe as itself, in few bytes."""

from __future__ import annotations

import pickle

import pytest

from localpar.wire import messages
from localpar.wire.sharedmem import SegmentRef

EXAMPLES = [
    messages.Ready(3),
    messages.Result(7, "value", 42, 1.5, 2.5, 0),
    messages.Result(8, "error", ("ValueError", "bad", "Traceback ..."), 1.0, 2.0, 3),
    messages.Aborted([9, 10], [8]),
    messages.Reclaimed([4, 5]),
    messages.Data(1, 0, 2, b"delta"),
    messages.Progress(1, 0, 3, 10),
    messages.Output(1, 0, "stdout", "hello\n"),
    messages.Spilled(1, 0, 2, SegmentRef("localpar-x-1-2", 4096, True)),
    messages.Abort([1, 2]),
    messages.Reclaim([3]),
    messages.Release(["localpar-x-1-2"]),
    messages.UseStore(b"proxy"),
    messages.StoreLost("gone"),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_kind_of_message_comes_back_as_itself(message):
    back = messages.decode(messages.encode(message))
    assert type(back) is type(message) and back == message


def test_a_result_envelope_is_a_plain_tuple_not_a_pickled_class():
    """The hot message: named tuples pickle by class name, slower both ways and bigger."""
    result = messages.Result(7, "value", 42, 1.5, 2.5, 0)
    assert len(messages.encode(result)) < len(pickle.dumps(result, protocol=5))
    assert b"Result" not in messages.encode(result)
