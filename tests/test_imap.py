"""``view.imap``: lazy over an infinite input, never more than `max_outstanding` in flight,
ordered and unordered results, errors in place or raised, cancel, and ``view.executor.map``."""

from __future__ import annotations

import gc
import itertools
import os
import threading
from typing import Iterator, List

import pytest

from localpar import Client, RemoteError
from localpar.client.imap import LazyMapIterator

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with Client(2) as c:
        yield c


def nap(x: int) -> int:
    import time

    time.sleep(0.02)
    return x


def imap_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("localpar-imap-")]


def test_an_infinite_input_never_has_more_than_max_outstanding_tasks_in_flight(client: Client) -> None:
    seen: List[int] = []  # the client's outstanding tasks each time imap pulls an input

    def source() -> Iterator[int]:
        for i in itertools.count():
            seen.append(len(client.outstanding))
            yield i

    view = client.load_balanced_view()
    it = view.imap(nap, source(), max_outstanding=4)
    assert isinstance(it, LazyMapIterator)
    results = [next(it) for _ in range(30)]
    it.cancel()
    assert it.wait_submitted(timeout=10)
    rest = list(it)  # what was submitted before the cancel is still yielded
    assert results == list(range(30))
    assert rest == list(range(30, 30 + len(rest)))
    # Each input is pulled only when fewer than 4 are in flight (the ledger's count).
    assert max(seen) <= 3, seen
    assert len(seen) == 30 + len(rest)  # every pulled input was submitted and yielded
    assert client.wait(timeout=10)


def test_results_come_in_input_order_zipped_to_the_shortest(client: Client) -> None:
    view = client.load_balanced_view()
    assert list(view.imap(lambda a, b: a + b, [1, 2, 3], [10, 20])) == [11, 22]
    assert list(view.imap(nap, range(7), max_outstanding=0)) == list(range(7))
    assert list(view.imap(nap, iter([]))) == []


def test_unordered_yields_what_finishes_first(client: Client, tmp_path: str) -> None:
    gate = os.path.join(str(tmp_path), "go")

    def task(i: int) -> int:
        import os
        import time

        deadline = time.monotonic() + 20
        while i == 0 and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)  # the first task waits until the client has the second's result
        return i

    view = client.load_balanced_view()
    it = view.imap(task, range(2), ordered=False, max_outstanding=2)
    first = next(it)
    open(gate, "w").close()
    assert (first, list(it)) == (1, [0])


def test_a_failed_task_is_raised_in_its_place_and_ends_the_iteration(client: Client) -> None:
    def bad3(n: int) -> int:
        if n == 3:
            raise ValueError("bad 3")
        return n * n

    view = client.load_balanced_view()
    assert list(view.imap(bad3, range(6), return_exceptions=True))[:3] == [0, 1, 4]
    errors = list(view.imap(bad3, range(6), return_exceptions=True))
    assert isinstance(errors[3], RemoteError) and errors[4:] == [16, 25]
    it = view.imap(bad3, range(6))
    got = []
    with pytest.raises(RemoteError, match="bad 3"):
        for x in it:
            got.append(x)
    assert got == [0, 1, 4]
    assert next(it, "end") == "end"
    assert client.wait(timeout=10)


def test_an_input_that_raises_raises_at_its_position(client: Client) -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("input broke")

    it = client.load_balanced_view().imap(nap, source())
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(KeyError, match="input broke"):
        next(it)


def test_bad_arguments_are_refused_up_front(client: Client) -> None:
    view = client.load_balanced_view()
    with pytest.raises(TypeError, match="at least one sequence"):
        view.imap(nap)
    with pytest.raises(ValueError, match="max_outstanding"):
        view.imap(nap, range(3), max_outstanding=-1)
    with pytest.raises(TypeError, match="callable"):
        view.imap(42, range(3))  # type: ignore[arg-type]
    assert view.apply_sync(nap, 5) == 5  # the view still works


def test_an_abandoned_imap_stops_consuming_its_input(client: Client) -> None:
    pulled = itertools.count()

    def source() -> Iterator[int]:
        for i in itertools.count():
            next(pulled)
            yield i

    before = set(imap_threads())
    it = client.load_balanced_view().imap(nap, source(), max_outstanding=2)
    assert next(it) == 0
    (feeder,) = set(imap_threads()) - before
    del it
    gc.collect()
    feeder.join(timeout=10)
    assert not feeder.is_alive()
    assert client.wait(timeout=10)


def test_a_closing_client_ends_the_feeder() -> None:
    before = set(imap_threads())
    with Client(1) as c:
        it = c.load_balanced_view().imap(nap, itertools.count(), max_outstanding=2)
        assert next(it) == 0
        (feeder,) = set(imap_threads()) - before
    feeder.join(timeout=10)
    assert not feeder.is_alive()


def gated(path: str) -> str:
    import os
    import time

    deadline = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return path


def test_waiting_for_an_imap_result_inside_a_callback_is_refused(client: Client, tmp_path: str) -> None:
    first, second = os.path.join(str(tmp_path), "first"), os.path.join(str(tmp_path), "second")
    it = client.load_balanced_view(targets=[1]).imap(gated, itertools.repeat(second), max_outstanding=1)
    trigger = client[0].apply_async(gated, first)
    errors: List[BaseException] = []

    def callback(_: object) -> None:  # run by the collector thread, which must never block
        try:
            next(it)  # not ready: the imap's task waits for the second gate
        except RuntimeError as exc:
            errors.append(exc)

    trigger.add_done_callback(callback)
    open(first, "w").close()
    trigger.get(timeout=30)
    open(second, "w").close()
    it.cancel()
    assert it.wait_submitted(timeout=10)
    client.wait(timeout=30)
    assert errors and "callback" in str(errors[0])


def test_a_direct_views_imap_is_its_map_in_order(client: Client) -> None:
    assert list(client[:].imap(lambda x: 2 * x, range(5))) == [0, 2, 4, 6, 8]


def test_executor_map_is_imap_one_task_per_item_and_counts_its_timeout_from_the_call(client: Client) -> None:
    executor = client.load_balanced_view().executor
    it = executor.map(nap, itertools.count())  # infinite: concurrent.futures' own map would hang here
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.cancel()

    def slow(x: int) -> int:
        import time

        time.sleep(1)
        return x

    pulled: List[int] = []

    def source() -> Iterator[int]:
        for i in range(100):
            pulled.append(i)
            yield i

    timed = executor.map(slow, source(), timeout=0.2)  # the first result cannot come before 1 s
    with pytest.raises(TimeoutError):
        list(timed)
    assert timed.it.wait_submitted(timeout=10)
    assert len(pulled) <= 2  # as concurrent.futures: a timed-out map goes no further
    client.wait(timeout=30)


def test_executor_shutdown_waits_for_every_map_to_submit_and_finish(client: Client) -> None:
    view = client.load_balanced_view()
    with view.executor as executor:
        m = executor.map(nap, range(10))
    assert all(ar.done() for ar in m.outstanding())
    assert list(m) == list(range(10))
