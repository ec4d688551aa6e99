"""The load balancer: tasks wait in the client until an engine has room (depth = ipyparallel's hwm)."""

from __future__ import annotations

import os
import time
import types

import pytest

from localpar import Client, balancer


def wait_for_gate(path: str) -> int:
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


@pytest.mark.parametrize("depth, third_is_sent", [(1, False), (2, True)])
def test_depth_bounds_the_tasks_handed_to_each_engine(tmp_path, depth, third_is_sent):
    gate = str(tmp_path / "gate")
    with Client(2) as c:
        c.load_balance_depth = depth
        lb = c.load_balanced_view()
        ars = [lb.apply_async(wait_for_gate, gate) for _ in range(3)]
        assert sorted(ar._records[0].engine_id for ar in ars[:2]) == [0, 1]  # one each: least busy first
        assert (ars[2]._records[0].engine_id >= 0) is third_is_sent
        open(gate, "w").close()
        assert sorted(set(ar.get(timeout=30) for ar in ars)) == sorted(c.engine_pids().values())


def test_short_tasks_are_queued_deeper_and_long_ones_are_not(tmp_path):
    """Short tasks fill an engine with a couple of milliseconds of work; long ones get `depth` again."""
    gate = str(tmp_path / "gate")
    with Client(2) as c:
        c.load_balance_depth = 1
        lb = c.load_balanced_view()
        for ar in [lb.apply_async(abs, -i) for i in range(50)]:  # short tasks: well under 100 µs each
            ar.get(timeout=30)
        ars = [lb.apply_async(wait_for_gate, gate) for _ in range(2 * balancer.MAX_DEPTH + 10)]
        sent = sum(ar._records[0].engine_id >= 0 for ar in ars)
        assert 6 <= sent <= 2 * balancer.MAX_DEPTH  # more than one per engine, yet bounded
        open(gate, "w").close()
        for ar in ars:
            ar.get(timeout=30)
        for _ in range(16):  # long tasks now: the moving average follows
            lb.apply_sync(time.sleep, 0.01)
        os.remove(gate)
        ars = [lb.apply_async(wait_for_gate, gate) for _ in range(3)]
        assert [ar._records[0].engine_id >= 0 for ar in ars] == [True, True, False]  # back to one per engine
        open(gate, "w").close()
        for ar in ars:
            ar.get(timeout=30)


@pytest.mark.parametrize(
    "mean, expected",
    [(None, 2), (1.0, 2), (0.001, 2), (0.0005, 4), (0.0001, 20), (1e-6, balancer.MAX_DEPTH), (0.0, balancer.MAX_DEPTH)],
)
def test_depth_follows_the_mean_run_time(mean, expected):
    ledger = types.SimpleNamespace(mean_task_seconds=mean)
    assert balancer.Balancer(ledger, depth=2).effective_depth() == expected  # type: ignore[arg-type]


def test_depth_must_be_positive():
    with Client(1) as c:
        with pytest.raises(ValueError, match="load_balance_depth"):
            c.load_balance_depth = 0
