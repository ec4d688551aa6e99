"""The small parts of ipyparallel's surface: timezone-aware timestamps, ``ar.result_dict``,
``split()`` parts that are plain AsyncResults, round-robin ``dist='r'``, a map's progress in items."""

from __future__ import annotations

import concurrent.futures as cf
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import pytest

from localpar import AsyncResult, Client, RemoteError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with Client(3) as c:
        yield c


def test_timestamps_are_timezone_aware(client: Client) -> None:
    ar = client[:].apply_async(lambda: 1)
    ar.get(timeout=30)
    now = datetime.now(timezone.utc)
    for key in ("submitted", "started", "completed", "received"):
        for t in ar[key]:
            assert t.tzinfo is not None
            assert abs((now - t).total_seconds()) < 3600  # the notebook's `t - datetime.now(timezone.utc)` works
    assert ar.submitted.tzinfo is not None


def test_result_dict_is_get_dict(client: Client) -> None:
    assert client[:].apply_async(lambda: 5).result_dict == {0: 5, 1: 5, 2: 5}
    assert client[1].apply_async(lambda: 6).result_dict == {1: 6}


def test_split_parts_are_async_results_finished_with_their_task(client: Client) -> None:
    def wait_for(path: str, i: int) -> int:
        import os
        import time

        deadline = time.monotonic() + 20
        while i == 1 and not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        if i == 2:
            raise ValueError("part 2")
        return i

    import os
    import tempfile

    gate = os.path.join(tempfile.mkdtemp(), "gate")
    amr = client.load_balanced_view().map_async(wait_for, [gate] * 3, range(3), chunksize=1)
    parts = amr.split()
    assert all(type(p) is AsyncResult for p in parts)
    done, pending = cf.wait(parts, timeout=30, return_when=cf.FIRST_COMPLETED)
    assert parts[1] in pending  # it waits for the gate: its part finishes on its own task, not the whole
    assert parts[0].get(timeout=30) == [[0]]
    open(gate, "w").close()
    assert parts[1].get(timeout=30) == [[1]]
    with pytest.raises(RemoteError, match="part 2"):
        parts[2].get(timeout=30)
    assert amr.split() is parts
    # A result split after its tasks finished: its parts are done at once.
    ar = client[:].apply_async(lambda: 3)
    ar.get(timeout=30)
    late = ar.split()
    assert [type(p) for p in late] == [AsyncResult] * 3 and all(p.done() for p in late)
    assert [p.get(timeout=0) for p in late] == [3, 3, 3]


def test_round_robin_scatter_gather_and_parallel(client: Client) -> None:
    dv = client[:]
    dv.scatter("a", list(range(8)), dist="r", block=True)
    assert dv.pull("a", block=True) == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert dv.gather("a", dist="r", block=True) == list(range(8))
    dv.scatter("x", np.arange(7), dist="r", block=True)
    joined = dv.gather("x", dist="r", block=True)
    assert joined.dtype == np.arange(7).dtype and joined.tolist() == list(range(7))

    @dv.parallel(dist="r", block=True)
    def tens(xs: list) -> list:
        return [x * 10 for x in xs]

    assert tens(list(range(8))) == [x * 10 for x in range(8)]

    @client.load_balanced_view().parallel(dist="r", block=True)
    def plus(xs: list) -> list:
        return [x + 1 for x in xs]

    assert plus(list(range(5))) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="'b'.*'r'"):
        dv.scatter("a", [1], dist="q")
    with pytest.raises(ValueError, match="round-robin"):
        dv.parallel(dist="x")


def test_a_maps_progress_counts_items(client: Client) -> None:
    amr = client.load_balanced_view().map_async(abs, range(100), chunksize=7)
    amr.get(timeout=30)
    assert (amr.progress, len(amr), len(amr.records)) == (100, 100, 15)
