"""ipyparallel's engine-set calls: wait_for_engines, shutdown(targets, restart), broadcast_view,
``async with Client``, and the engine uuids that errors' engine_info names."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from localpar import Client, ClientClosedError, CompositeError, EngineError, RemoteError
from localpar.client.view import BroadcastView, DirectView

pytestmark = pytest.mark.timeout(60)


def test_wait_for_engines_returns_at_once_when_enough_are_up_and_times_out_otherwise() -> None:
    with Client(2) as c:
        assert c.wait_for_engines(2) is None
        done = c.wait_for_engines(1, block=False)
        assert isinstance(done, Future) and done.done() and done.result() is None
        with pytest.raises(TimeoutError, match="3 engines not ready in 0.1 seconds. Currently ready: 2"):
            c.wait_for_engines(3, timeout=0.1)
        assert len(c) == 2  # it started nothing
        with pytest.raises(TypeError, match="must be specified"):
            c.wait_for_engines()


def test_a_non_blocking_wait_for_engines_is_woken_by_add_engines() -> None:
    with Client(1) as c:
        f = c.wait_for_engines(2, timeout=30, block=False)
        assert isinstance(f, Future) and not f.done()
        c.add_engines(1)
        assert f.result(timeout=30) is None


def test_a_pending_wait_for_engines_fails_when_the_client_closes() -> None:
    before = set(threading.enumerate())
    c = Client(1)
    try:
        f = c.wait_for_engines(5, block=False)
        assert isinstance(f, Future)
        (waiter,) = [t for t in set(threading.enumerate()) - before if t.name == "localpar-wait-for-engines"]
    finally:
        c.close()
    assert isinstance(f.exception(timeout=30), ClientClosedError)
    waiter.join(timeout=10)
    assert not waiter.is_alive()


def test_shutdown_stops_the_targets_only_and_restart_dead_does_not_bring_them_back() -> None:
    with Client(3, restart_dead=True) as c:
        busy = c[1].apply_async(__import__("time").sleep, 30)
        c.shutdown([1, 2], block=True)
        assert c.ids == [0]
        with pytest.raises(IndexError):
            c[1]
        with pytest.raises(EngineError):
            busy.get(timeout=30)
        assert c[0].apply_sync(lambda: 5) == 5  # the others keep working


def test_shutdown_restart_replaces_the_engines_with_the_same_ids_and_uuids() -> None:
    with Client(2) as c:
        pids, uuids = c.engine_pids(), c.engine_uuids
        c.shutdown([1], restart=True)
        assert c.ids == [0, 1]
        assert c.engine_pids()[1] != pids[1] and c.engine_pids()[0] == pids[0]
        assert c.engine_uuids == uuids
        assert c[1].apply_sync(lambda: 6) == 6


def test_shutdown_hub_closes_the_client() -> None:
    with Client(1) as c:
        c.shutdown(hub=True)
        assert c.closed


def test_engine_info_names_the_engines_uuid_and_the_method() -> None:
    with Client(2) as c:
        uuids = c.engine_uuids
        assert len(set(uuids.values())) == 2
        with pytest.raises(CompositeError) as apply_error:
            c[:].apply_sync(lambda: 1 / 0)
        assert [e[-1] for e in apply_error.value.elist] == [
            {"engine_uuid": uuids[i], "engine_id": i, "method": "apply"} for i in (0, 1)
        ]
        with pytest.raises(RemoteError) as execute_error:
            c[0].execute("1 / 0", block=False).get(timeout=30)
        assert execute_error.value.engine_info == {"engine_uuid": uuids[0], "engine_id": 0, "method": "execute"}

        def execute(x: int) -> float:  # a user function named like the operation is still an apply
            return 1 / x

        with pytest.raises(RemoteError) as named:
            c[0].apply_sync(execute, 0)
        assert named.value.engine_info["method"] == "apply"
        c.restart_engine(0)
        assert c.engine_uuids == uuids  # kept across restart_engine


def test_broadcast_view_is_a_direct_view_of_the_targets_with_its_flags() -> None:
    with Client(2) as c:
        view = c.broadcast_view(block=True)
        assert isinstance(view, BroadcastView) and isinstance(view, DirectView)
        assert (view.block, view.targets, view.is_coalescing) == (True, [0, 1], False)
        assert view.apply(lambda: 3) == [3, 3]
        view.execute("x = 2 + 3")
        assert view.pull("x") == [5, 5]
        assert c.broadcast_view(targets=[1], is_coalescing=True).apply_sync(lambda: 4) == [4]


def test_async_with_client_closes_it_on_leaving() -> None:
    async def run() -> Client:
        async with Client(1) as c:
            assert await c[0].apply_async(lambda: 7) == 7
        return c

    c = asyncio.run(run())
    assert c.closed
    assert not [t for t in threading.enumerate() if t.name.startswith(f"localpar-collector-{c.cluster_id}")]
