"""The load balancer: tasks wait in the client until an engine has room (depth = ipyparallel's hwm)."""

from __future__ import annotations

import os
import time
import types

import pytest
from conftest import wait_for_file

from localpar import Client, TaskAborted
from localpar.client import balancer
from localpar.wire.messages import Reclaim


def wait_for_gate(path: str) -> int:
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def run_short_tasks(lb) -> None:
    """Tasks well under 100 µs each: from now on the balancer queues deep."""
    for ar in [lb.apply_async(abs, -i) for i in range(50)]:
        ar.get(timeout=30)


@pytest.mark.parametrize("depth, third_is_sent", [(1, False), (2, True)])
def test_depth_bounds_the_tasks_handed_to_each_engine(tmp_path, depth, third_is_sent):
    gate = str(tmp_path / "gate")
    with Client(2) as c:
        c.load_balance_depth = depth
        lb = c.load_balanced_view()
        ars = [lb.apply_async(wait_for_gate, gate) for _ in range(3)]
        assert sorted(ar.records[0].engine_id for ar in ars[:2]) == [0, 1]  # one each: least busy first
        assert (ars[2]._records[0].engine_id >= 0) is third_is_sent
        open(gate, "w").close()
        assert sorted(set(ar.get(timeout=30) for ar in ars)) == sorted(c.engine_pids().values())


def wait_for_gate_file(path: str) -> str:
    wait_for_gate(path)
    return path


def test_a_deep_queue_is_refilled_once_half_empty_many_tasks_at_once(tmp_path):
    """Depth 8: an engine that ran 1, 2, 3 of its 8 tasks gets none; at 4 it is filled up again."""
    gates = [str(tmp_path / f"gate{i}") for i in range(10)]
    with Client(1) as c:
        c.load_balance_depth = 8
        lb = c.load_balanced_view()
        ars = [lb.apply_async(wait_for_gate_file, gate) for gate in gates]
        assert c.queue_status()["unassigned"] == 2
        for i in range(3):
            open(gates[i], "w").close()
            assert ars[i].get(timeout=30) == gates[i]
            time.sleep(0.05)  # the collector hands out tasks right after it completes one
            assert c.queue_status()["unassigned"] == 2, i
        open(gates[3], "w").close()
        ars[3].get(timeout=30)
        deadline = time.monotonic() + 30
        while c.queue_status()["unassigned"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert c.queue_status()[0]["queue"] == 6  # 4 held, 2 more in one write
        for gate in gates[4:]:
            open(gate, "w").close()
        assert [ar.get(timeout=30) for ar in ars] == gates


def test_short_tasks_are_queued_deeper_and_long_ones_are_not(tmp_path):
    """Short tasks fill an engine with a couple of milliseconds of work; long ones get `depth` again."""
    gate = str(tmp_path / "gate")
    with Client(2) as c:
        c.load_balance_depth = 1
        lb = c.load_balanced_view()
        run_short_tasks(lb)
        ars = [lb.apply_async(wait_for_gate, gate) for _ in range(2 * balancer.MAX_DEPTH + 10)]
        sent = sum(ar.records[0].engine_id >= 0 for ar in ars)
        assert 6 <= sent <= 2 * balancer.MAX_DEPTH  # more than one per engine, yet bounded
        open(gate, "w").close()
        for ar in ars:
            ar.get(timeout=30)
        for _ in range(16):  # long tasks now: the moving average follows
            lb.apply_sync(time.sleep, 0.01)
        os.remove(gate)
        ars = [lb.apply_async(wait_for_gate, gate) for _ in range(3)]
        assert [ar.records[0].engine_id >= 0 for ar in ars] == [True, True, False]  # back to one per engine
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


def append_line(path: str, text: str, pause: float) -> int:
    time.sleep(pause)
    with open(path, "a") as f:
        f.write(text + "\n")
    return os.getpid()


def test_short_tasks_queued_behind_a_long_one_are_handed_to_an_idle_engine(tmp_path):
    """Deep queues cost nothing when a task runs long: the tasks behind it go elsewhere."""
    gate = str(tmp_path / "gate")
    with Client(2) as c:
        lb = c.load_balanced_view()
        run_short_tasks(lb)
        c.load_balance_depth = 1
        assert c._balancer.effective_depth() > 2
        long = c[0].apply_async(wait_for_gate, gate)  # engine 0 is busy until the gate opens
        short = [lb.apply_async(os.getpid) for _ in range(10)]  # queued on both, by load
        try:
            pids = {ar.get(timeout=30) for ar in short}  # without hand-back: stuck behind `long`
            assert pids == {c.engine_pids()[1]}
            assert not long.ready()
        finally:
            open(gate, "w").close()
        assert long.get(timeout=30) == c.engine_pids()[0]


def test_tasks_handed_back_run_exactly_once(tmp_path):
    """Hand-backs at every burst's end and uneven tasks: each task's side effect happens once."""
    out = str(tmp_path / "lines")
    with Client(2) as c:
        lb = c.load_balanced_view()
        run_short_tasks(lb)
        ars = [lb.apply_async(append_line, out, str(i), 0.02 if i % 50 == 0 else 0.0) for i in range(1500)]
        for ar in ars:
            ar.get(timeout=60)
        with open(out) as f:
            lines = f.read().split()
        assert sorted(lines, key=int) == [str(i) for i in range(1500)]
        assert c._ledger.balanced == 0  # every one counted off: ended or handed back (the fast path's count)


def test_an_abort_racing_a_hand_back_still_aborts(tmp_path):
    gate = str(tmp_path / "gate")
    with Client(2) as c:
        lb = c.load_balanced_view()
        run_short_tasks(lb)
        blockers = [c[i].apply_async(wait_for_gate, gate) for i in (0, 1)]
        queued = [lb.apply_async(os.getpid) for _ in range(20)]
        c.abort(queued)
        open(gate, "w").close()
        for ar in blockers:
            ar.get(timeout=30)
        for ar in queued:
            with pytest.raises(TaskAborted):
                ar.get(timeout=30)
        assert c._ledger.balanced == 0


def gated_line(gate: str, out: str, text: str) -> int:
    open(out + ".started", "w").close()
    wait_for_gate(gate)
    return append_line(out, text, 0.0)


def test_an_engine_hands_back_only_tasks_it_has_not_started(tmp_path):
    """Asked for the task it is running and one it has not started, it gives back the second only."""
    gate, out = str(tmp_path / "gate"), str(tmp_path / "lines")
    with Client(2) as c:
        c.load_balance_depth = 2
        lb = c.load_balanced_view(targets=[0])
        running = lb.apply_async(gated_line, gate, out, "running")
        queued = lb.apply_async(append_line, out, "queued", 0.0)
        wait_for_file(out + ".started")
        c._ledger.engines[0].send_control(Reclaim([running._records[0].seq, queued._records[0].seq]))
        open(gate, "w").close()
        assert running.get(timeout=30) == queued.get(timeout=30) == c.engine_pids()[0]
        with open(out) as f:
            assert sorted(f.read().split()) == ["queued", "running"]  # each ran once
