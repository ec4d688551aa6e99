"""Bad input and failing tasks: each error has its own type and names its cause."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterator

import pytest

from localpar import Client, CompositeError, RemoteError, SerializationError
from localpar.datapub import publish_data


@pytest.fixture
def c() -> Iterator[Client]:
    with Client(2) as client:
        yield client


def explode_here(message: str) -> None:
    raise ValueError(message)


def fail_on(engine: int, pid_of: dict) -> int:
    if os.getpid() == pid_of.get(engine):
        raise KeyError(f"engine {engine} refuses")
    return engine


def add(a: int, b: int) -> int:
    return a + b


def test_remote_error_carries_type_message_traceback_and_engine(c: Client) -> None:
    ar = c[1].apply_async(explode_here, "bad value 42")
    with pytest.raises(RemoteError) as info:
        ar.get(timeout=10)
    err = info.value
    assert err.ename == "ValueError"
    assert err.evalue == "bad value 42"
    assert "explode_here" in err.traceback  # the remote frame, not a client-side one
    assert "ValueError: bad value 42" in err.traceback
    assert err.engine_id == 1
    assert "ValueError" in str(err) and "bad value 42" in str(err)
    assert c[1].apply_sync(add, 1, 2) == 3  # the engine keeps serving


def test_every_failing_engine_is_listed_in_composite_error(c: Client) -> None:
    ar = c[:].apply_async(explode_here, "all fail")
    with pytest.raises(CompositeError) as info:
        ar.get(timeout=10)
    err = info.value
    assert len(err.elist) == 2
    assert [e[0] for e in err.elist] == ["ValueError", "ValueError"]
    assert sorted(e.engine_id for e in err.errors) == [0, 1]
    for i in range(2):
        with pytest.raises(RemoteError) as one:
            err.raise_exception(i)
        assert one.value.ename == "ValueError"
        assert "explode_here" in one.value.traceback
    assert "[0:ValueError]" in str(err) and "[1:ValueError]" in str(err)
    assert c[:].apply_sync(add, 2, 3) == [5, 5]


def test_one_failing_engine_of_many_still_raises_composite_error(c: Client) -> None:
    pids = c.engine_pids()
    ar = c[:].apply_async(fail_on, 1, pids)
    with pytest.raises(CompositeError) as info:
        ar.get(timeout=10)
    err = info.value
    assert len(err.errors) == 1
    assert err.errors[0].engine_id == 1
    assert err.errors[0].ename == "KeyError"
    assert "fail_on" in err.errors[0].traceback
    assert c[:].apply_sync(fail_on, 5, pids) == [5, 5]  # both keep working


def test_unpicklable_argument_fails_at_submission_and_sends_nothing(c: Client) -> None:
    before = set(c.outstanding)
    with pytest.raises(SerializationError) as info:
        c[:].apply_async(add, threading.Lock(), 1)
    message = str(info.value)
    assert "argument 0" in message
    assert "lock" in message.lower()
    assert c.outstanding == before
    assert c[:].apply_sync(add, 1, 1) == [2, 2]


def test_unpicklable_function_fails_at_submission_and_names_the_lock(c: Client) -> None:
    lock = threading.Lock()
    before = set(c.outstanding)
    with pytest.raises(SerializationError) as info:
        c[0].apply_async(lambda: lock.locked())
    message = str(info.value)
    assert "lambda" in message
    assert "lock" in message.lower()
    assert c.outstanding == before
    assert c[0].apply_sync(add, 2, 2) == 4


def test_unpicklable_function_is_rejected_by_load_balanced_view(c: Client) -> None:
    lock = threading.Lock()
    before = set(c.outstanding)
    with pytest.raises(SerializationError):
        c.load_balanced_view().apply_async(add, lock, 1)
    assert c.outstanding == before
    assert c.load_balanced_view().apply_async(add, 3, 4).get(timeout=10) == 7


def return_lock() -> Any:
    return threading.Lock()


def publish_lock() -> str:
    publish_data({"fine": 1})
    publish_data({"the_lock": threading.Lock()})
    return "unreachable"


def test_unpicklable_return_value_fails_that_task_only(c: Client) -> None:
    with pytest.raises(RemoteError) as info:
        c[0].apply_async(return_lock).get(timeout=10)
    assert info.value.ename == "SerializationError"
    assert "return value" in info.value.evalue
    assert "lock" in info.value.evalue.lower()
    assert c[0].apply_sync(add, 1, 2) == 3


def test_unpicklable_published_value_names_the_key(c: Client) -> None:
    ar = c[0].apply_async(publish_lock)
    with pytest.raises(RemoteError) as info:
        ar.get(timeout=10)
    assert info.value.ename == "SerializationError"
    assert "published value" in info.value.evalue
    assert "the_lock" in info.value.evalue
    assert ar.data == {"fine": 1}  # what was published before stays
    assert c[0].apply_sync(add, 1, 2) == 3


def publish_non_dict() -> None:
    publish_data([("a", 1)])


def test_publish_data_with_a_non_dict_raises_type_error_in_the_task(c: Client) -> None:
    with pytest.raises(RemoteError) as info:
        c[0].apply_async(publish_non_dict).get(timeout=10)
    assert info.value.ename == "TypeError"
    assert "dict" in info.value.evalue
    assert c[0].apply_sync(add, 0, 1) == 1


def test_publish_data_outside_an_engine_says_where_it_belongs() -> None:
    with pytest.raises(RuntimeError, match="inside a task running on .*engine"):
        publish_data({"a": 1})


def sleep_then(value: int, seconds: float) -> int:
    time.sleep(seconds)
    return value


def test_get_timeout_raises_builtin_timeout_error_and_task_keeps_running(c: Client) -> None:
    ar = c[0].apply_async(sleep_then, 7, 1.0)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        ar.get(timeout=0.2)
    waited = time.monotonic() - t0
    assert 0.15 <= waited < 5  # about the timeout: neither immediate nor a hang
    assert not ar.ready()
    assert ar.get(timeout=10) == 7


def test_failed_call_does_not_disturb_other_calls_in_flight(c: Client) -> None:
    good = c[1].apply_async(sleep_then, 5, 0.3)
    bad = c[0].apply_async(explode_here, "x")
    with pytest.raises(RemoteError):
        bad.get(timeout=10)
    assert good.get(timeout=10) == 5


def test_errors_are_shaped_as_ipyparallel_shapes_them():
    """An abort, a closed client and no engines are siblings of a task's own exception
    (RemoteError), not under it: ``except RemoteError`` does not swallow them, while
    LocalparError (and KernelError) catch all.  A dead engine is a RemoteError, as ipyparallel
    raises it (its own test_z_crash catches it with ``except RemoteError``)."""
    from localpar import (
        ClientClosedError,
        CompositeError,
        EngineError,
        KernelError,
        LocalparError,
        NoEnginesError,
        RemoteError,
        TaskAborted,
    )

    others = [TaskAborted("m-2"), NoEnginesError("none"), ClientClosedError("closed")]
    for error in others:
        assert not isinstance(error, RemoteError), type(error)
        assert isinstance(error, KernelError) and isinstance(error, LocalparError)
    assert isinstance(EngineError(0, -9, "m-1"), RemoteError)
    assert issubclass(CompositeError, RemoteError) and issubclass(RemoteError, KernelError)
    assert isinstance(ClientClosedError("closed"), RuntimeError)
    composite = CompositeError("one or more exceptions raised in: f", [EngineError(0, -9, "m-1"), *others])
    assert [e.ename for e in composite.errors] == ["EngineError", "TaskAborted", "NoEnginesError", "ClientClosedError"]


def test_the_error_module_exports_only_errors():
    import localpar.error
    import localpar.errors

    assert sorted(localpar.error.__all__) == sorted(localpar.errors.__all__)
    for leaked in ("signal", "describe_exit", "not_picklable"):
        assert not hasattr(localpar.error, leaked)
