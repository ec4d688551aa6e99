"""The collector alone: no engine processes, only real pipes that each test writes by hand.

Each test builds what ``Client.__init__`` and ``Client._start_engine`` build (a Ledger, a
PublicationQueue, a Collector, one EngineHandle over a trivial child process), writes the
engine's side of the wire itself, and watches the TaskRecord and a fake AsyncResult.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from typing import Any, Iterator, List, Tuple

import pytest

from localpar import ClientClosedError, EngineError
from localpar.client.collector import Collector
from localpar.client.handles import EngineHandle, TaskRecord
from localpar.client.ledger import Ledger
from localpar.wire import messages
from localpar.wire.framing import write_frame
from localpar.wire.messages import Data, Result
from localpar.wire.pubqueue import PublicationQueue, PublicationWriter
from localpar.wire.serialization import dumps

WAIT = 10.0  # seconds: a bound on waits that should take far less


class FakeSpinHint:
    """What the ledger calls on a SpinHint."""

    def __init__(self) -> None:
        self.forgotten: List[int] = []

    def waiting(self) -> None:
        pass

    def done_waiting(self) -> None:
        pass

    def forget(self, engine_id: int) -> None:
        self.forgotten.append(engine_id)


class FakeResult:
    """What the ledger and the collector call on an AsyncResult; records the calls in order."""

    def __init__(self, tasks: int = 1) -> None:
        self.remaining = tasks
        self.calls: List[Tuple[str, Any]] = []

    def task_done(self) -> bool:
        self.remaining -= 1
        return self.remaining == 0

    def finish(self) -> None:
        self.calls.append(("finish", None))

    def apply_data(self, index: int, delta: Any) -> None:
        self.calls.append(("apply_data", (index, delta)))

    def notify_data(self) -> None:
        self.calls.append(("notify_data", None))


class Rig:
    """A ledger, a queue and a running collector, with one engine handle whose event pipe,
    task and control pipes the test holds the engine's ends of."""

    def __init__(self) -> None:
        self.cluster_id = f"unit{uuid.uuid4().hex[:8]}"
        self.spin_hint = FakeSpinHint()
        self.ledger = Ledger(self.spin_hint)  # type: ignore[arg-type]
        self.queue = PublicationQueue()
        self.collector = Collector(self.cluster_id, self.ledger, self.queue)
        ctx = multiprocessing.get_context("fork")
        self.process = ctx.Process(target=time.sleep, args=(60,), name="fake-engine")
        self.process.start()
        self.task_r, task_w = ctx.Pipe(duplex=False)
        self.control_r, control_w = ctx.Pipe(duplex=False)
        events_r, self.events_w = ctx.Pipe(duplex=False)
        self.handle = EngineHandle(0, self.process, task_w, control_w, events_r, self.ledger.watch_again)
        self.ledger.add_engine(self.handle)
        self.collector.start()

    def record(self, result: FakeResult, index: int = 0) -> TaskRecord:
        """A task registered on the engine, as ``Ledger.send`` does before writing it."""
        seq = self.ledger.next_seq()
        record = TaskRecord(seq, f"msg-{seq}", self.handle.id, result, index)  # type: ignore[arg-type]
        assert self.ledger.register(record)
        return record

    def send_event(self, event: Any) -> None:
        """Write one event frame as the engine would, on its event pipe."""
        write_frame(self.events_w.fileno(), messages.encode(event))

    def publish(self, data: Data) -> None:
        """Write one publication frame as the engine would, on the shared queue."""
        PublicationWriter(self.queue.writer).put(messages.encode(data), timeout=WAIT)

    def close(self) -> None:
        """What ClusterResources.close does, for this rig: close the ledger, stop the collector,
        end the process, close every pipe end."""
        try:
            self.ledger.close()
            self.collector.stop()
        finally:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=WAIT)
            self.handle.alive = False
            self.handle.close()
            for conn in (self.task_r, self.control_r, self.events_w):
                conn.close()
            self.queue.close()
            self.ledger.doorbell.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    try:
        yield r
    finally:
        r.close()
    assert not r.collector.thread.is_alive()


def result_for(record: TaskRecord, value: Any, publications: int = 0) -> Result:
    now = time.time()
    return Result(record.seq, "value", value, now - 0.01, now, publications)


def test_a_value_result_completes_its_record_and_finishes_its_result_once(rig: Rig) -> None:
    fake = FakeResult()
    record = rig.record(fake)
    rig.send_event(result_for(record, 42))
    assert rig.ledger.wait_until(lambda: record.done, WAIT)
    assert record.status == "ok"
    assert record.value == 42
    assert record.error is None
    assert record.result is None  # dropped once done
    assert fake.calls == [("finish", None)]
    assert record.seq not in rig.ledger.records
    assert record.seq not in rig.handle.pending
    assert rig.handle.completed == 1


def test_a_result_waits_for_the_publication_it_counts(rig: Rig) -> None:
    fake = FakeResult()
    record = rig.record(fake, index=3)
    rig.send_event(result_for(record, "done", publications=1))
    # The collector has read the result (it holds the count) but must not complete the record.
    assert rig.ledger.wait_until(lambda: record.pubs_expected == 1, WAIT)
    assert not rig.ledger.wait_until(lambda: record.done, 0.3)
    assert fake.calls == []
    body, segments = dumps({"k": 1}, rig.cluster_id, what="the published data")
    assert segments == []
    rig.publish(Data(record.seq, rig.handle.id, 1, body))
    assert rig.ledger.wait_until(lambda: record.done, WAIT)
    assert record.status == "ok"
    assert record.value == "done"
    assert record.pubs_applied == 1
    assert record.last_pubseq == 1
    assert fake.calls == [("apply_data", (3, {"k": 1})), ("finish", None)]


def test_a_killed_engine_fails_its_pending_task_with_engine_error(rig: Rig) -> None:
    fake = FakeResult()
    record = rig.record(fake)
    os.kill(rig.process.pid, signal.SIGKILL)  # type: ignore[arg-type]
    assert rig.ledger.wait_until(lambda: record.done, WAIT)
    assert isinstance(record.error, EngineError)
    message = str(record.error)
    assert "engine 0" in message
    assert "SIGKILL" in message
    assert record.msg_id in message
    assert record.error.exitcode == -signal.SIGKILL
    assert rig.handle.exitcode == -signal.SIGKILL
    assert not rig.handle.alive
    assert 0 not in rig.ledger.live_ids()
    assert rig.spin_hint.forgotten == [0]
    assert fake.calls == [("finish", None)]


class SentinelHeld:
    """An engine process whose ``join`` waits as multiprocessing's does while what the engine
    forked holds its sentinel open: here, until the test ends."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.released = threading.Event()

    def join(self, timeout: Any = None) -> None:
        self.released.wait()
        self.real.join(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_death_is_reported_while_the_engines_children_hold_its_sentinel(rig: Rig) -> None:
    """The death comes through the pidfd; the report must not wait for the engine's children
    (issue 23: EngineError came 1 s late when a task had started a multiprocessing.Process)."""
    held = SentinelHeld(rig.process)
    rig.handle.process = held  # type: ignore[assignment]
    try:
        fake = FakeResult()
        record = rig.record(fake)
        os.kill(rig.process.pid, signal.SIGKILL)  # type: ignore[arg-type]
        assert rig.ledger.wait_until(lambda: record.done, WAIT), "the death report waited for the sentinel"
        assert isinstance(record.error, EngineError)
        assert rig.handle.exitcode == -signal.SIGKILL
    finally:
        held.released.set()


def test_an_engine_that_dies_while_the_client_closes_fails_its_task_as_closed(rig: Rig) -> None:
    """close() closes the ledger, then terminates busy engines, then stops the collector: a death
    seen in between is the close's doing, not the engine's failure."""
    fake = FakeResult()
    record = rig.record(fake)
    rig.ledger.close()
    os.kill(rig.process.pid, signal.SIGTERM)  # type: ignore[arg-type]
    assert rig.ledger.wait_until(lambda: record.done, WAIT)
    assert isinstance(record.error, ClientClosedError), record.error
    assert record.msg_id in str(record.error)


def test_a_task_sent_after_the_ledger_closed_fails_as_closed(rig: Rig) -> None:
    """A submission racing close(): refused by the closed ledger, it says the client closed."""
    fake = FakeResult()
    seq = rig.ledger.next_seq()
    record = TaskRecord(seq, f"msg-{seq}", rig.handle.id, fake, 0)  # type: ignore[arg-type]
    rig.ledger.close()
    rig.ledger.send(record, b"")
    assert record.done
    assert isinstance(record.error, ClientClosedError), record.error


class MergingResult(FakeResult):
    """A FakeResult that keeps its task's merged data, as an AsyncResult does (``data_slots``)."""

    def __init__(self) -> None:
        super().__init__()
        self.slots: List[dict] = [{}]

    def data_slots(self) -> List[dict]:
        return self.slots

    def apply_data(self, index: int, delta: Any) -> None:
        super().apply_data(index, delta)
        self.slots[index] = {**self.slots[index], **delta}

    def hold_segments(self, segments: Any) -> None:
        pass


class FreshStore:
    """The Manager's copy of engine 0's data, fresher than what reached the client."""

    def __init__(self, seq: int, pubseq: int, state: dict) -> None:
        self.answer = (seq, pubseq, state)
        self.death_r, self.death_w = os.pipe()  # never readable: this Manager does not die
        self.death_fd = self.death_r

    def latest(self, engine_id: int, timeout: float) -> Any:
        return self.answer if engine_id == 0 else None

    def close(self) -> None:
        os.close(self.death_r)
        os.close(self.death_w)


def test_a_retry_resumes_from_the_managers_copy_when_it_is_newer_than_what_arrived(rig: Rig) -> None:
    """The engine dies after its third publication left it for the Manager, but only the first
    reached the client: the next attempt resumes from the third (recovered before the retry)."""
    from localpar.client.balancer import Balancer
    from localpar.client.dependencies import FlagValues, TaskFlags

    balancer = Balancer(rig.ledger)  # hooks itself into the ledger, as in a Client
    sent: List[Any] = []
    balancer.encode = lambda call: (sent.append(call), (b"resumed", []))[1]  # type: ignore[assignment,func-returns-value]
    result = MergingResult()
    record = rig.record(result)  # type: ignore[arg-type]
    record.call = b"the call"  # load-balanced
    record.flags = TaskFlags(FlagValues(1, 0.0, None, None), None)
    store = FreshStore(record.seq, 3, {"step": 3, "x": "three"})
    with rig.ledger.lock:
        rig.collector.store = store  # type: ignore[assignment]
    rig.ledger.watch_again()
    try:
        rig.publish(Data(record.seq, 0, 1, dumps({"step": 1, "x": "one"}, rig.cluster_id)[0]))
        deadline = time.monotonic() + WAIT
        while result.slots[0].get("step") != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        rig.process.kill()
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent, "the task was not retried"
        (op, (state, call), kwargs) = sent[0]
        assert (op.__name__, state, call, kwargs) == ("resume", {"step": 3, "x": "three"}, b"the call", {})
        assert result.slots[0] == {"step": 3, "x": "three"}  # what ar.data ends with, too
        while not record.done and time.monotonic() < deadline:  # no engine is left to run it
            time.sleep(0.01)
        assert record.done and "no live engine" in str(record.error)
    finally:
        rig.ledger.close()
        rig.collector.stop()
        store.close()
