"""The engine loop: interrupts that never tear a message, forks and threads made by tasks,
publishing from several threads, and the one rule for a function's globals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from conftest import HANG_GUARD, wait_for_file, wait_pids_gone

from localpar import Client, RemoteError
from localpar.datapub import publish_data
from localpar.wire.messages import Release


@pytest.fixture(scope="module")
def c():
    with Client(2) as client:
        yield client


def publish_megabytes_catching_interrupts(n: int) -> int:
    """Publish 1 MB arrays (each through shared memory, each freeing the last), counting the
    interrupts that land; one landing outside the try fails the task, which is fine too."""
    block = np.ones(1 << 17)
    caught = 0
    for i in range(n):
        try:
            publish_data({"i": i, "block": block})
        except KeyboardInterrupt:
            caught += 1
    return caught


def test_interrupts_landing_inside_publish_data_never_tear_a_message(c):
    """A flood of interrupts while tasks publish: wherever one lands (pickling, writing
    the queue, reading segment releases from the control pipe), it surfaces as a
    KeyboardInterrupt in the task's code and nowhere else, so no pipe is left with half a
    message: every task ends with a count or a KeyboardInterrupt, and the engine serves on."""
    stop = threading.Event()
    sent = [0]
    engine = c._ledger.engines[0]  # white box: widen the window a torn read would need
    unknown = Release(["localpar-none-0-0"])  # a segment the engine does not have: ignored

    def flood() -> None:
        while not stop.is_set():
            c.interrupt(0)
            if sent[0] % 25 == 0:  # bursts of control frames: long to parse once read
                for _ in range(1000):
                    engine.send_control(unknown)
            sent[0] += 1
            time.sleep(0.0003)

    flooder = threading.Thread(target=flood)
    flooder.start()
    outcomes = []
    try:
        while sent[0] < 3000:
            ar = c[0].apply_async(publish_megabytes_catching_interrupts, 200)
            try:
                outcomes.append(ar.get(timeout=HANG_GUARD))
            except RemoteError as exc:
                assert exc.ename == "KeyboardInterrupt", exc.traceback
                outcomes.append(exc.ename)
    finally:
        stop.set()
        flooder.join(timeout=HANG_GUARD)
    caught = sum(o for o in outcomes if isinstance(o, int))
    assert caught > 100, outcomes  # most landed inside publish_data
    assert c[0].apply_sync(sum, [1, 2]) == 3


def fork_and_return() -> int:
    pid = os.fork()
    return pid  # the child returns too, into the engine loop


def test_a_process_forked_by_a_task_returns_into_nothing(c):
    engine = c[0].apply_sync(os.getpid)
    child = c[0].apply_sync(fork_and_return)
    assert child > 0  # the parent's answer, not the child's 0
    assert not wait_pids_gone([child]), "the forked copy kept running as a second engine"
    assert {c[0].apply_sync(os.getpid) for _ in range(20)} == {engine}


def leave_a_publishing_thread(seconds: float) -> str:
    def keep_publishing() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                publish_data({"stray": True})
            except RuntimeError:
                pass  # refused once its task has returned: expected
            time.sleep(0.001)

    threading.Thread(target=keep_publishing, daemon=True).start()
    time.sleep(0.05)
    return "left"


def publish_mine(seconds: float) -> None:
    publish_data({"mine": 1})
    time.sleep(seconds)


def test_a_thread_left_running_by_a_task_cannot_publish_into_the_next_task(c):
    first = c[1].apply_async(leave_a_publishing_thread, 0.6)
    assert first.get(timeout=HANG_GUARD) == "left"
    assert first.data == {"stray": True}
    second = c[1].apply_async(publish_mine, 0.4)
    second.get(timeout=HANG_GUARD)
    assert second.data == {"mine": 1}
    time.sleep(0.3)  # the stray thread ends: it harms nothing later either
    assert c[1].apply_sync(sum, [2, 2]) == 4


def publish_from_threads(n_threads: int, n: int) -> int:
    def publish_many(k: int) -> None:
        for i in range(n):
            publish_data({f"t{k}": i})

    threads = [threading.Thread(target=publish_many, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    publish_many(n_threads)  # the task's own thread too
    for t in threads:
        t.join()
    return n_threads


def test_publish_data_from_several_threads_of_one_task(c):
    ar = c[0].apply_async(publish_from_threads, 4, 500)
    assert ar.get(timeout=HANG_GUARD * 3) == 4
    assert ar.data == {f"t{k}": 499 for k in range(5)}


GLOBALS_SCRIPT = textwrap.dedent(
    """
    from localpar import Client

    x = 1

    def read_x():
        return x

    def read_y():
        return y  # the client has no y: it resolves in the engine's namespace

    with Client(1) as c:
        e = c[0]
        seen = [e.apply_sync(read_x)]
        e.push({"x": 2}, block=True)
        seen.append(e.apply_sync(read_x))
        for i in range(200):  # enough other functions to cycle the engine's function cache
            assert e.apply_sync(eval(f"lambda: {i}")) == i
        e.push({"x": 2}, block=True)
        seen.append(e.apply_sync(read_x))
        x = 3
        seen.append(e.apply_sync(read_x))
        e.push({"y": 5}, block=True)
        seen.append(e.apply_sync(read_y))
        print(seen)
    """
)


def test_a_function_sees_the_clients_globals_on_every_call_whatever_the_cache(tmp_path):
    """The rule (see localpar.engine.loop): the globals a __main__ function names take the values
    they had on the client at the call; names the client lacks resolve in the namespace."""
    script = tmp_path / "globals_rule.py"
    script.write_text(GLOBALS_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 1, 1, 3, 5]"


def test_an_interrupt_between_tasks_is_harmless(c, tmp_path):
    c.interrupt(0)
    flag = tmp_path / "go"
    ar = c[0].apply_async(wait_for_file, str(flag))
    flag.touch()
    assert ar.get(timeout=HANG_GUARD) == str(flag)


def append_line(path: str) -> int:
    with open(path, "a") as f:
        f.write("ran\n")
    return 1


def test_a_task_frame_written_twice_runs_once(c, tmp_path):
    """A client interrupted between a frame's write and its bookkeeping may write it again
    (see framing.Outbox); the engine skips a task number it has already run."""
    from localpar.wire.serialization import dumps_call

    path = tmp_path / "log"
    ar = c[1].apply_async(append_line, str(path))
    assert ar.get(timeout=HANG_GUARD) == 1
    call, _ = dumps_call(append_line, (str(path),), {}, c.cluster_id)
    seq = int(ar.msg_ids[0].rsplit("-", 1)[1])
    c._ledger.engines[1].send_task(seq, call)  # white box: the duplicate an interrupt can cause
    assert c[1].apply_sync(append_line, str(path)) == 1  # runs after the duplicate, in order
    assert path.read_text() == "ran\n" * 2
