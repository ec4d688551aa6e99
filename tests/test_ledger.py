"""The ledger alone, without processes: fake engine handles and fake results."""

from __future__ import annotations

import threading
from typing import List

import pytest

from localpar.client.handles import TaskRecord
from localpar.client.ledger import Ledger


class FakeSpinHint:
    def __init__(self) -> None:
        self.forgotten: List[int] = []

    def waiting(self) -> None:
        pass

    def done_waiting(self) -> None:
        pass

    def forget(self, engine_id: int) -> None:
        self.forgotten.append(engine_id)


class FakeHandle:
    def __init__(self, engine_id: int) -> None:
        self.id = engine_id
        self.alive = True
        self.pending: set = set()
        self.completed = 0
        self.idle_since = None
        self.exitcode = None
        self.sent: List[int] = []

    def send_task(self, seq: int, call: bytes) -> None:
        self.sent.append(seq)


class FakeResult:
    def __init__(self, tasks: int) -> None:
        self.remaining = tasks
        self.finished = 0

    def task_done(self) -> bool:
        self.remaining -= 1
        return self.remaining == 0

    def finish(self) -> None:
        self.finished += 1


def make(tasks: int = 1):
    ledger = Ledger(FakeSpinHint())  # type: ignore[arg-type]
    handle = FakeHandle(0)
    ledger.add_engine(handle)  # type: ignore[arg-type]
    result = FakeResult(tasks)
    records = [TaskRecord(ledger.next_seq(), f"m-{i}", 0, result, i) for i in range(tasks)]  # type: ignore[arg-type]
    return ledger, handle, result, records


def test_complete_counts_each_record_once_and_finishes_the_result_at_the_last():
    ledger, handle, result, records = make(2)
    for r in records:
        assert ledger.register(r)
    assert handle.pending == {r.seq for r in records}
    ledger.complete(records[0])
    ledger.complete(records[0])  # twice: nothing more
    assert result.finished == 0 and result.remaining == 1 and handle.completed == 1
    ledger.complete(records[1])
    assert result.finished == 1 and handle.pending == set() and ledger.records == {}
    assert all(r.done and r.result is None for r in records)  # no cycle left to the result


def test_register_refuses_a_dead_engine_and_a_closed_ledger():
    ledger, handle, _, (record,) = make(1)
    handle.alive = False
    assert not ledger.register(record)
    handle.alive = True
    ledger.close()
    assert not ledger.register(record)
    assert ledger.records == {} and handle.pending == set()


def test_a_dead_engine_gives_its_pending_records_in_order_and_is_forgotten_by_the_spin_hint():
    ledger, handle, _, records = make(3)
    for r in reversed(records):
        ledger.register(r)
    assert ledger.engine_died(handle) == records  # type: ignore[arg-type]
    assert not handle.alive and ledger.live_ids() == []
    assert ledger._spin_hint.forgotten == [0]  # type: ignore[attr-defined]


def test_wait_until_is_woken_by_notify_and_times_out_otherwise():
    ledger, _, _, _ = make(1)
    flag = threading.Event()
    assert ledger.wait_until(flag.is_set, 0.2) is False

    def later() -> None:
        flag.set()
        ledger.notify_waiters()

    timer = threading.Timer(0.05, later)
    timer.start()
    try:
        assert ledger.wait_until(flag.is_set, 30) is True
    finally:
        timer.join()


def test_the_collector_thread_may_not_wait_for_itself():
    ledger, _, _, _ = make(1)
    ledger.collector_thread = threading.current_thread()
    with pytest.raises(RuntimeError, match="cannot wait"):
        ledger.check_can_wait()
    ledger.collector_thread = None
    ledger.check_can_wait()
