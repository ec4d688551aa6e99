"""Load and leaks: many clients, many tasks, many publications, bounded memory.

Memory is measured as the client's resident set size (RSS) after a warm-up, so
that one-time costs (imports, allocator arenas, the first segments) are not
counted; the bounds are generous on purpose and stated in each docstring.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Dict, List

import psutil
import pytest
from conftest import LeakChecker

from localpar import Client
from localpar.datapub import publish_data

HANG_GUARD = 60.0
MB = 1024 * 1024


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def tiny(x: int) -> int:
    return x


def publish_many(n: int) -> int:
    for i in range(n):
        publish_data({"i": i, "payload": "x" * 20})
    return n


def test_fast_publisher_is_neither_stalled_nor_buffered_without_bound(leak_check: LeakChecker) -> None:
    """200,000 publications as fast as possible: done, last value kept, RSS growth < 50 MB."""
    with Client(2) as c:
        c[:].apply_async(publish_many, 1000).get(timeout=HANG_GUARD)  # warm-up
        before = rss()
        ar = c[0].apply_async(publish_many, 200_000)
        seen: List[int] = []
        deadline = time.monotonic() + HANG_GUARD
        while not ar.ready():
            assert time.monotonic() < deadline, "the publishing task stalled"
            data = ar.data
            if "i" in data:
                seen.append(data["i"])
            time.sleep(0.05)
        assert ar.get(timeout=HANG_GUARD) == 200_000
        assert ar.data == {"i": 199_999, "payload": "x" * 20}
        assert seen == sorted(seen)  # the client only ever moves forward
        growth = rss() - before
        assert growth < 50 * MB, f"client RSS grew by {growth / MB:.1f} MB"
        assert c[1].apply_async(tiny, 3).get(timeout=HANG_GUARD) == 3


@pytest.mark.slow
def test_many_client_lifecycles_leave_nothing_behind(leak_check: LeakChecker) -> None:
    """200 create/use/close cycles of Client(2), each with its Manager up: no process,
    thread, fd or shm segment left (checked by leak_check), RSS growth < 30 MB."""
    # fork, whatever threads earlier tests left (tqdm's monitor): the default would then be
    # forkserver, whose children import numpy and localpar afresh, 10x slower per cycle.
    with Client(2, start_method="fork") as c:  # warm-up
        c[:].apply_async(tiny, 1).get(timeout=HANG_GUARD)
    before = rss()
    for i in range(200):
        with Client(2, start_method="fork") as c:
            assert c[:].apply_async(tiny, i).get(timeout=HANG_GUARD) == [i, i]
            c[:].apply_sync(publish_data, {"i": i})  # the first publication starts the Manager
            deadline = time.monotonic() + HANG_GUARD
            while c.manager_pid is None:  # the whole cluster, Manager included, is torn down
                assert time.monotonic() < deadline
                time.sleep(0.005)
    del c
    growth = rss() - before
    assert growth < 30 * MB, f"client RSS grew by {growth / MB:.1f} MB over 200 clients"


@pytest.mark.slow
def test_hundred_thousand_tiny_tasks_in_bounded_memory(leak_check: LeakChecker) -> None:
    """100,000 tasks (50 batches of 1,000 apply_async on 2 engines): all right, and once
    their AsyncResults are dropped the client's RSS is < 30 MB above the warm-up's."""
    with Client(2) as c:
        view = c[:]
        for ar in [view.apply_async(tiny, i) for i in range(1000)]:  # warm-up
            ar.get(timeout=HANG_GUARD)
        before = rss()
        done = 0
        for _batch in range(50):
            ars = [view.apply_async(tiny, i) for i in range(1000)]
            for i, ar in enumerate(ars):
                assert ar.get(timeout=HANG_GUARD) == [i, i]
            done += 2 * len(ars)
        assert done == 100_000
        del ars, ar
        assert not c.outstanding
        growth = rss() - before
        assert growth < 30 * MB, f"client RSS grew by {growth / MB:.1f} MB after 100,000 tasks"


@pytest.mark.slow
def test_million_publications_in_bounded_memory(leak_check: LeakChecker) -> None:
    """1,000,000 small publications (500,000 per engine, from a task loop): both tasks
    finish with their last values on ar.data; client RSS growth < 50 MB."""
    with Client(2) as c:
        c[:].apply_async(publish_many, 1000).get(timeout=HANG_GUARD)  # warm-up
        before = rss()
        ar = c[:].apply_async(publish_many, 500_000)
        deadline = time.monotonic() + HANG_GUARD
        snapshots: List[Any] = []
        while not ar.ready():
            assert time.monotonic() < deadline, "the publishing tasks stalled"
            snapshots.append(ar.data)
            time.sleep(0.1)
        assert ar.get(timeout=HANG_GUARD) == [500_000, 500_000]
        last: Dict[str, Any] = {"i": 499_999, "payload": "x" * 20}
        assert ar.data == [last, last]
        del snapshots
        growth = rss() - before
        assert growth < 50 * MB, f"client RSS grew by {growth / MB:.1f} MB over 1,000,000 publications"
