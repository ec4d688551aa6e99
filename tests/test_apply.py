"""apply / apply_async / apply_sync and block modes, on the views."""

from __future__ import annotations

import time

import pytest

from localpar import AsyncResult, Client


@pytest.fixture(scope="module")
def c():
    with Client(2) as client:
        yield client


def test_view_block_defaults_to_false(c):
    dv = c[:]
    assert dv.block is False
    ar = dv.apply(lambda: 3)
    assert isinstance(ar, AsyncResult)
    assert ar.get(timeout=10) == [3, 3]


def test_apply_honours_block(c):
    dv = c[:]
    dv.block = True
    assert dv.apply(lambda x: x * 2, 21) == [42, 42]


def test_apply_async_never_blocks_and_apply_sync_always_does(c):
    dv = c[:]
    dv.block = True
    assert isinstance(dv.apply_async(lambda: 1), AsyncResult)
    dv.block = False
    assert dv.apply_sync(lambda: 1) == [1, 1]


def test_single_int_target_returns_bare_value(c):
    assert c[1].apply_sync(lambda: "x") == "x"
    assert c[[1]].apply_sync(lambda: "x") == ["x"]


def test_results_in_target_order(c):
    import os

    pids = c[[1, 0]].apply_sync(os.getpid)
    assert pids == [c.engine_pids()[1], c.engine_pids()[0]]


def test_lambdas_closures_and_kwargs(c):
    base = 10

    def closure(x, *, scale=1):
        return (x + base) * scale

    assert c[0].apply_sync(closure, 1, scale=3) == 33
    assert c[0].apply_sync(lambda *a, **k: (a, k), 1, 2, z=3) == ((1, 2), {"z": 3})


def test_tasks_on_one_engine_run_in_submission_order(c):
    def record(i):
        import time

        time.sleep(0.01 * (i % 2))
        return i, time.monotonic()

    ars = [c[0].apply_async(record, i) for i in range(10)]
    results = [ar.get(timeout=10) for ar in ars]
    assert [i for i, _ in results] == list(range(10))
    stamps = [t for _, t in results]
    assert stamps == sorted(stamps)


def test_engines_run_one_call_at_once(c):
    def stamp():
        import time

        start = time.monotonic()
        time.sleep(0.3)
        return start, time.monotonic()

    (s0, e0), (s1, e1) = c[:].apply_sync(stamp)
    assert s0 < e1 and s1 < e0  # the two runs overlapped


def test_get_timeout_raises_builtin_timeout_and_task_keeps_running(c):
    ar = c[0].apply_async(time.sleep, 0.5)
    with pytest.raises(TimeoutError):
        ar.get(timeout=0.05)
    assert not ar.ready()
    assert ar.get(timeout=10) is None
    assert ar.successful()


def test_wait_ready_elapsed_engine_id(c):
    ar = c[:].apply_async(time.sleep, 0.1)
    assert ar.wait(timeout=0.01) is False
    assert ar.wait(timeout=10) is True
    assert ar.ready()
    assert ar.engine_id == [0, 1]
    assert c[1].apply_async(lambda: 0).engine_id == 1
    assert ar.elapsed >= 0.1
    meta = ar.metadata
    assert [m["engine_id"] for m in meta] == [0, 1]
    assert all(m["status"] == "ok" and m["completed"] >= m["started"] for m in meta)


def test_error_leaves_client_working(c):
    def boom():
        raise ValueError("nope")

    ar = c[0].apply_async(boom)
    with pytest.raises(Exception, match="nope"):
        ar.get(timeout=10)
    assert not ar.successful()
    assert c[0].apply_sync(lambda: "still here") == "still here"
