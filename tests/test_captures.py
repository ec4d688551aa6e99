"""The pickle-reuse rule for functions sent by value (see ``localpar.wire.captures``).

Functions here are made with ``__module__ == "__main__"`` (as in a script or a
notebook), so cloudpickle sends them by value, as it does for users.
"""

from __future__ import annotations

import types

import pytest

from localpar import Client
from localpar.wire import captures
from localpar.wire.serialization import function_blob

pytestmark = pytest.mark.timeout(60)


def main_function(source: str, name: str, **namespace: object) -> types.FunctionType:
    """A function defined as if in ``__main__``, with `namespace` as its globals."""
    namespace["__name__"] = "__main__"
    exec(compile(source, "<notebook cell>", "exec"), namespace)
    return namespace[name]  # type: ignore[return-value]


def blob(f):
    """The pickle of `f` as a call sends it; the same object when it was reused."""
    fblob, segments = function_blob(f, "test")
    assert segments == []
    return fblob


@pytest.fixture(scope="module")
def c():
    with Client(1) as client:
        yield client


# -- the rule, on the client ------------------------------------------------------------
def test_an_unchanged_function_is_pickled_once():
    f = main_function("import math\nK = 3\ndef f(x):\n    return math.sqrt(x) + K\n", "f")
    assert blob(f) is blob(f)


def test_rebinding_a_global_makes_a_new_pickle():
    f = main_function("K = 3\ndef f():\n    return K\n", "f")
    first = blob(f)
    f.__globals__["K"] = 4
    assert blob(f) != first


def test_rebinding_a_global_of_a_function_it_calls_makes_a_new_pickle():
    f = main_function("K = 1\ndef g():\n    return K\ndef f():\n    return g()\n", "f")
    first = blob(f)
    f.__globals__["K"] = 2
    assert blob(f) != first


def test_a_closure_cell_rebound_makes_a_new_pickle():
    def make():
        n = 1

        def f():
            return n

        def bump():
            nonlocal n
            n += 1

        return f, bump

    f, bump = make()
    first = blob(f)
    assert blob(f) is first
    bump()
    assert blob(f) != first


@pytest.mark.parametrize(
    "value", [[1], {"a": 1}, {1}, bytearray(b"x"), (1, [2])], ids=["list", "dict", "set", "bytearray", "tuple-of-list"]
)
def test_a_function_that_captures_something_mutable_is_pickled_every_call(value):
    f = main_function("def f():\n    return V\n", "f", V=value)
    assert captures.snapshot(f) is None
    assert blob(f) is not blob(f)


def test_what_counts_as_immutable():
    f = main_function(
        "import os\ndef f():\n    return (os, A, B, C, D, E, len)\n", "f", A=1, B="s", C=(1, ("x", None)), D=2.5, E=b"b"
    )
    assert captures.snapshot(f) is not None


def test_defaults_are_part_of_the_pickle():
    f = main_function("def f(x=1):\n    return x\n", "f")
    first = blob(f)
    f.__defaults__ = (2,)
    assert blob(f) != first


def test_a_recursive_function_can_be_reused():
    f = main_function("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n", "fact")
    assert blob(f) is blob(f)


# -- the rule, end to end -----------------------------------------------------------------
def test_engines_see_a_rebound_global(c):
    f = main_function("K = 1\ndef f():\n    return K\n", "f")
    assert c[0].apply_sync(f) == 1
    f.__globals__["K"] = 2
    assert c[0].apply_sync(f) == 2


def test_engines_see_a_list_mutated_on_the_client(c):
    items = [1]
    f = main_function("def f():\n    return list(ITEMS)\n", "f", ITEMS=items)
    assert c[0].apply_sync(f) == [1]
    items.append(2)
    assert c[0].apply_sync(f) == [1, 2]


def test_a_task_that_mutates_what_it_captured_does_not_change_the_next_call(c):
    """Each call starts from the client's value, not from the engine's copy after the last call."""
    f = main_function("def f():\n    SEEN.append(1)\n    return len(SEEN)\n", "f", SEEN=[])
    assert [c[0].apply_sync(f) for _ in range(3)] == [1, 1, 1]


def test_a_lambda_made_again_in_a_loop_reuses_its_pickle(c):
    blobs = [blob(lambda: 7) for _ in range(3)]
    assert blobs[0] is blobs[1] is blobs[2]
    assert [c[0].apply_sync(lambda: 7) for _ in range(3)] == [7, 7, 7]
