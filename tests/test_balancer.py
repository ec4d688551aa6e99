"""The load balancer: tasks wait in the client until an engine has room (depth = ipyparallel's hwm)."""

from __future__ import annotations

import os
import time

import pytest

from localpar import Client


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


def test_short_tasks_are_queued_twice_as_deep_and_long_ones_are_not(tmp_path):
    gate = str(tmp_path / "gate")
    with Client(2) as c:
        c.load_balance_depth = 1
        lb = c.load_balanced_view()
        for ar in [lb.apply_async(abs, -i) for i in range(20)]:  # short tasks
            ar.get(timeout=30)
        ars = [lb.apply_async(wait_for_gate, gate) for _ in range(5)]
        assert [ar._records[0].engine_id >= 0 for ar in ars] == [True] * 4 + [False]  # two per engine
        time.sleep(0.2)  # the gated tasks now run long
        open(gate, "w").close()
        for ar in ars:
            ar.get(timeout=30)
        os.remove(gate)
        ars = [lb.apply_async(wait_for_gate, gate) for _ in range(3)]
        assert [ar._records[0].engine_id >= 0 for ar in ars] == [True, True, False]  # back to one per engine
        open(gate, "w").close()
        for ar in ars:
            ar.get(timeout=30)


def test_depth_must_be_positive():
    with Client(1) as c:
        with pytest.raises(ValueError, match="load_balance_depth"):
            c.load_balance_depth = 0
