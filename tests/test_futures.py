"""AsyncResult as a future: concurrent.futures, asyncio, and the live-data iterators/callbacks."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
import time
from typing import List

import pytest

from localpar import AsyncResult, Client, RemoteError

pytestmark = pytest.mark.timeout(60)


def count(n: int, delay: float = 0.03) -> int:
    """Publish ``{"i": 1..n}`` with a short sleep after each; return n."""
    import time

    from localpar.datapub import publish_data

    for i in range(1, n + 1):
        publish_data({"i": i})
        time.sleep(delay)
    return n


def lockstep(n: int, gates: str) -> int:
    """Publish ``{"i": i}``, then wait for the client to create ``gates/i`` before going on."""
    import os
    import time

    from localpar.datapub import publish_data

    for i in range(1, n + 1):
        publish_data({"i": i})
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(gates, str(i))) and time.monotonic() < deadline:
            time.sleep(0.005)
    return n


def gated(gate: str, value: int) -> int:
    """Wait for the gate file, then return `value`."""
    import os
    import time

    deadline = time.monotonic() + 20
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def fail() -> None:
    raise ValueError("deliberate")


def values(states: List[dict]) -> List[int]:
    return [s["i"] for s in states if "i" in s]


# -- concurrent.futures ---------------------------------------------------------------------
def test_futures_wait(client):
    ars = [client[0].apply_async(count, 3), client[1].apply_async(count, 4), client[:].apply_async(count, 2)]
    assert all(isinstance(ar, cf.Future) for ar in ars)
    done, not_done = cf.wait(ars, timeout=30)
    assert done == set(ars) and not not_done
    assert [ar.result(timeout=0) for ar in ars] == [3, 4, [2, 2]]


def test_futures_wait_first_completed_and_timeout(client, tmp_path):
    gate = tmp_path / "gate"
    slow = client[0].apply_async(gated, str(gate), 1)
    fast = client[1].apply_async(lambda: 2)
    done, not_done = cf.wait([slow, fast], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert (done, not_done) == ({fast}, {slow})
    done, not_done = cf.wait([slow], timeout=0.2)
    assert (done, not_done) == (set(), {slow})
    gate.touch()
    assert slow.result(timeout=30) == 1


def test_as_completed_in_completion_order(client, tmp_path):
    gate = tmp_path / "gate"
    slow = client[0].apply_async(gated, str(gate), "slow")
    fast = client[1].apply_async(lambda: "fast")
    order = []
    for future in cf.as_completed([slow, fast], timeout=30):
        order.append(future.result())
        gate.touch()  # only now may the slow one finish
    assert order == ["fast", "slow"]


def test_add_done_callback_fires_once_with_the_result(client):
    calls: List[AsyncResult] = []
    fired = threading.Event()

    def callback(future: cf.Future) -> None:
        calls.append(future)  # type: ignore[arg-type]
        fired.set()

    ar = client[:].apply_async(count, 3)
    ar.add_done_callback(callback)
    assert ar.get(timeout=30) == [3, 3]
    assert fired.wait(10)
    ar.wait(1)
    ar.get(timeout=1)
    assert calls == [ar] and calls[0] is ar

    late: List[cf.Future] = []
    ar.add_done_callback(late.append)  # on a finished future: called at once, in this thread
    assert late == [ar]
    assert calls == [ar]


def test_add_done_callback_on_failure(client):
    fired = threading.Event()
    seen: List[BaseException] = []

    def callback(future: cf.Future) -> None:
        seen.append(future.exception(timeout=0))  # type: ignore[arg-type]
        fired.set()

    ar = client[0].apply_async(fail)
    ar.add_done_callback(callback)
    assert fired.wait(30)
    assert len(seen) == 1 and isinstance(seen[0], RemoteError) and seen[0].ename == "ValueError"


# -- asyncio --------------------------------------------------------------------------------
def test_await(client):
    async def main() -> int:
        return await client[0].apply_async(count, 2)

    assert asyncio.run(main()) == 2


def test_await_raises_the_remote_error(client):
    async def main() -> None:
        await client[1].apply_async(fail)

    with pytest.raises(RemoteError, match="deliberate"):
        asyncio.run(main())


def test_gather(client):
    async def main() -> list:
        ars = [client[0].apply_async(count, 2), client[1].apply_async(count, 3), client[:].apply_async(lambda: 5)]
        return await asyncio.gather(*ars)

    assert asyncio.run(main()) == [2, 3, [5, 5]]


def test_wait_for_timeout_leaves_the_task_running(client, tmp_path):
    gate = tmp_path / "gate"
    ar = client[0].apply_async(gated, str(gate), 9)
    assert ar.wait(0) is False

    async def main() -> None:
        await asyncio.wait_for(ar, timeout=0.2)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(main())
    gate.touch()
    assert ar.get(timeout=30) == 9  # a running task cannot be cancelled; it completes


def test_aiter_data_sees_every_value_and_ends_with_the_task(client, tmp_path):
    ar = client[0].apply_async(lockstep, 5, str(tmp_path))

    async def main() -> List[dict]:
        states = []
        async for data in ar.aiter_data():
            states.append(data)
            if "i" in data:
                (tmp_path / str(data["i"])).touch()  # let the task publish its next value
        return states

    states = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert values(states) == [1, 2, 3, 4, 5]
    assert ar.done() and ar.get(timeout=0) == 5
    assert states[-1] == ar.data == {"i": 5}


def test_aiter_data_on_a_multi_engine_result(client):
    ar = client[:].apply_async(count, 6)

    async def main() -> List[list]:
        return [data async for data in ar.aiter_data()]

    states = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert ar.done() and states[-1] == ar.data == [{"i": 6}, {"i": 6}]
    for engine in (0, 1):
        seen = values([s[engine] for s in states])
        assert seen == sorted(seen) and seen[-1] == 6


# -- on_data and iter_data ------------------------------------------------------------------
def test_on_data_sees_successive_states(client):
    states: List[list] = []
    lock = threading.Lock()

    def watch(data: list) -> None:
        with lock:
            states.append(data)

    ar = client[:].apply_async(count, 6)
    assert ar.on_data(watch) is watch
    assert ar.get(timeout=30) == [6, 6]
    with lock:
        final = list(states)
    assert final[-1] == ar.data == [{"i": 6}, {"i": 6}]
    for engine in (0, 1):
        seen = values([s[engine] for s in final])
        assert seen == sorted(seen) and seen[-1] == 6
    assert len(final) >= 2  # several updates, not one final burst


def test_on_data_single_target_gets_dicts(client):
    states: List[dict] = []
    ar = client[1].apply_async(count, 3)
    ar.on_data(states.append)
    ar.get(timeout=30)
    assert all(isinstance(s, dict) for s in states)
    assert states[-1] == ar.data == {"i": 3}


def test_iter_data_sees_every_value_and_ends_with_the_task(client, tmp_path):
    ar = client[1].apply_async(lockstep, 5, str(tmp_path))
    states = []
    for data in ar.iter_data(timeout=30):
        states.append(data)
        if "i" in data:
            (tmp_path / str(data["i"])).touch()
    assert values(states) == [1, 2, 3, 4, 5]
    assert ar.done() and ar.get(timeout=0) == 5
    assert states[-1] == {"i": 5}


def test_iter_data_multi_engine_increasing(client):
    ar = client[:].apply_async(count, 5)
    states = list(ar.iter_data(timeout=30))
    assert ar.done() and states[-1] == ar.data == [{"i": 5}, {"i": 5}]
    for engine in (0, 1):
        seen = values([s[engine] for s in states])
        assert seen == sorted(seen) and seen[-1] == 5


def test_iter_data_ends_when_the_task_fails(client):
    def publish_then_fail() -> None:
        from localpar.datapub import publish_data

        publish_data({"i": 1})
        raise ValueError("deliberate")

    ar = client[0].apply_async(publish_then_fail)
    states = list(ar.iter_data(timeout=30))
    assert states[-1] == {"i": 1}
    with pytest.raises(RemoteError, match="deliberate"):
        ar.get(timeout=0)


def test_iter_data_timeout(client, tmp_path):
    gate = tmp_path / "gate"
    ar = client[0].apply_async(gated, str(gate), 1)
    with pytest.raises(TimeoutError):
        for _ in ar.iter_data(timeout=0.3):
            pass
    gate.touch()
    assert ar.get(timeout=30) == 1


def test_concurrent_consumers_of_one_result(client, tmp_path):
    """A thread iterating the data, a coroutine awaiting it, and a blocking get, all at once."""
    ar = client[:].apply_async(count, 8)
    seen: List[list] = []
    iterating = threading.Thread(target=lambda: seen.extend(ar.iter_data(timeout=30)))
    iterating.start()

    async def main() -> list:
        return await ar

    assert asyncio.run(asyncio.wait_for(main(), timeout=30)) == [8, 8]
    assert ar.get(timeout=30) == [8, 8]
    iterating.join(30)
    assert not iterating.is_alive()
    assert seen[-1] == [{"i": 8}, {"i": 8}]


def test_futures_in_a_thread_pool(client):
    """Results handed around by a ThreadPoolExecutor: get() from several threads at once."""
    ars = [client[i % 2].apply_async(count, 2 + i) for i in range(4)]
    with cf.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda ar: ar.get(timeout=30), ars))
    assert results == [2, 3, 4, 5]


def publish_after_a_moment() -> str:
    import time

    from localpar.datapub import publish_data

    time.sleep(0.2)  # the client registers its watchers first
    publish_data({"x": 1})
    return "done"


def test_a_failing_on_data_callback_is_logged_and_harms_nothing(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list = []
    ar = client[0].apply_async(publish_after_a_moment)

    def broken(data: object) -> None:
        raise ValueError("watcher bug")

    ar.on_data(broken)
    ar.on_data(seen.append)
    assert ar.get(timeout=10) == "done"
    assert seen[-1] == {"x": 1}  # the next watcher still ran
    assert "watcher bug" in caplog.text
    assert client[1].apply_sync(publish_after_a_moment) == "done"


# -- cancel ------------------------------------------------------------------------------------
def announce_then_gated(gate: str, value: int) -> int:
    from localpar.datapub import publish_data

    publish_data({"running": True})
    return gated(gate, value)


def test_a_cancelled_call_is_seen_done_by_wait_as_completed_and_asyncio(tmp_path):
    """cancel() on a load-balanced call still queued in the client notifies every kind of
    waiter: concurrent.futures.wait, as_completed, and an asyncio task awaiting it."""
    gate = tmp_path / "gate"
    with Client(1) as c:
        c.load_balance_depth = 1
        lview = c.load_balanced_view()
        busy = lview.apply_async(announce_then_gated, str(gate), 1)
        queued = lview.apply_async(gated, str(gate), 2)
        deadline = time.monotonic() + 30
        while not busy.data and time.monotonic() < deadline:  # it runs: only `queued` waits in the client
            time.sleep(0.01)
        waited: List[object] = []

        def wait_for_it() -> None:  # already waiting when cancel() comes
            waited.append(cf.wait([queued], timeout=30))

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()

        async def await_it() -> str:
            try:
                await asyncio.wrap_future(queued)
            except asyncio.CancelledError:
                return "cancelled"
            return "not cancelled"

        loop = asyncio.new_event_loop()
        try:
            pending = loop.create_task(await_it())
            loop.run_until_complete(asyncio.sleep(0.05))
            assert queued.cancel() is True
            assert loop.run_until_complete(asyncio.wait_for(pending, 30)) == "cancelled"
        finally:
            loop.close()
        waiter.join(timeout=30)
        assert waited and queued in waited[0].done
        assert list(cf.as_completed([queued], timeout=30)) == [queued]
        assert queued.cancelled()
        assert busy.cancel() is False  # it runs: it cannot be cancelled
        gate.touch()
        assert busy.get(timeout=30) == 1
        assert c[0].apply_sync(gated, str(gate), 3) == 3  # the cancelled task never ran
