"""The collector: data before results under a full queue, deaths seen from the process, one reader."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import HANG_GUARD, pid_gone, wait_pids_gone

from localpar import Client, CompositeError, EngineError
from localpar.datapub import publish_data


@pytest.fixture(scope="module")
def c():
    with Client(3) as client:
        yield client


def burst(n: int, big_every: int) -> int:
    """Publish `n` times, a 256 KiB array every `big_every` calls, small dicts otherwise."""
    for i in range(n):
        if i % big_every == 0:
            publish_data({"i": i, "big": np.full(1 << 15, i)})
        else:
            publish_data({"i": i, f"k{i % 5}": "x" * (i % 300)})
    publish_data({"last": n})
    return n


def test_a_result_waits_for_every_publication_of_its_task_even_behind_a_full_queue(c):
    """The count in each result is the only thing that orders data before results.

    A slow reader (an on_data callback, run by the collector) lets the shared
    queue fill while several engines burst big and small values; each engine
    then holds publications back and flushes them just before its result.
    Results are read before the queue in every batch, so without the count a
    result would complete while its last publications still sit in the pipe.
    """
    for _ in range(3):
        ar = c[:].apply_async(burst, 1500, 97)
        ar.on_data(lambda data: time.sleep(0.0002))
        assert ar.get(timeout=HANG_GUARD * 6) == [1500] * 3
        final = ar.data  # read at once: get() promises it is complete
        assert [d.get("last") for d in final] == [1500] * 3
        assert all(d["i"] == 1499 for d in final)
        assert all(int(d["big"][0]) == 1455 for d in final)  # the last multiple of 97 below 1500


def test_many_results_never_wait_out_their_timeout_once_finished(c):
    """A finished task's get() returns at once: 400 calls with a 128 KiB array argument
    (it travels through shared memory) never hit their 2 s timeout."""
    arg = np.ones(1 << 14)
    timeouts = 0
    for _ in range(400):
        ar = c[0].apply_async(np.sum, arg)
        try:
            assert ar.get(timeout=2) == float(1 << 14)
        except TimeoutError:
            timeouts += 1
    assert timeouts == 0


def start_helper_then_die(seconds: float) -> None:
    helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(seconds,))
    helper.start()
    publish_data({"helper": helper.pid})
    time.sleep(0.2)
    os._exit(3)


def test_death_is_seen_from_the_process_even_while_its_child_holds_the_pipes():
    """A task's multiprocessing helper inherits the engine's pipes: their EOF says nothing.
    The engine's death must still fail its task at once, not when the helper exits."""
    with Client(2) as c:
        ar = c[0].apply_async(start_helper_then_die, 60)
        other = c[1].apply_async(time.sleep, 0.5)
        try:
            with pytest.raises(EngineError, match="engine 0 died with exit code 3"):
                ar.get(timeout=15)  # the helper sleeps for 60 s
            assert c.ids == [1]
            assert other.get(timeout=HANG_GUARD) is None
        finally:
            helper = ar.data.get("helper")
            if helper and not pid_gone(helper):
                os.kill(helper, signal.SIGKILL)
        assert helper and not wait_pids_gone([helper])


def sleep_then(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


def test_a_death_fails_only_that_engines_tasks_while_others_are_pending():
    with Client(3) as c:
        lview = c.load_balanced_view()
        victim = c[0].apply_async(sleep_then, 0, 30)
        queued_on_victim = c[0].apply_async(sleep_then, 1, 0)
        others = [c[i].apply_async(sleep_then, i, 0.3) for i in (1, 2) for _ in range(3)]
        balanced = lview.map_async(sleep_then, range(6), [0.05] * 6)
        time.sleep(0.2)
        os.kill(c.engine_pids()[0], signal.SIGKILL)
        for ar in (victim, queued_on_victim):
            with pytest.raises(EngineError, match="SIGKILL"):
                ar.get(timeout=HANG_GUARD)
        assert [ar.get(timeout=HANG_GUARD) for ar in others] == [1, 1, 1, 2, 2, 2]
        try:  # a balanced task may have been on engine 0: it fails alone, the rest arrive
            assert balanced.get(timeout=HANG_GUARD) == list(range(6))
        except CompositeError as exc:
            assert {(e.ename, e.engine_id) for e in exc.errors} == {("EngineError", 0)}
            assert all(r.done() for r in [balanced])


def test_a_collector_failure_fails_pending_tasks_instead_of_hanging(monkeypatch):
    """A bug in the reading thread must surface as an error on every pending task."""
    from localpar.client import collector

    with Client(1) as c:
        ar = c[0].apply_async(sleep_then, 1, 0.3)

        def broken(self, handle, result):
            raise ValueError("injected")

        monkeypatch.setattr(collector.Collector, "_on_result", broken)
        with pytest.raises(RuntimeError, match="collector thread failed .*injected"):
            ar.get(timeout=HANG_GUARD)
        assert c.closed
        with pytest.raises(RuntimeError, match="closed"):
            c[0].apply_async(sleep_then, 1, 0)


def test_one_reader_even_with_many_threads_getting_and_polling(c):
    """Threads that get, poll ar.data and submit at once all finish; nobody reads a pipe but
    the collector, so no result is lost between them."""
    errors = []

    def worker(k: int) -> None:
        try:
            for i in range(150):
                ar = c[i % 3].apply_async(pow, k, 2)
                _ = ar.data
                assert ar.get() == k * k  # no timeout: the join below is the guard
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=HANG_GUARD * 6)
    assert not [t for t in threads if t.is_alive()], "a get() without timeout never returned"
    assert not errors
