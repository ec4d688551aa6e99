"""Live output: a task's prints reach ``ar.stdout`` while it runs, coalesced, all of them
before its result, each once, never torn by an interrupt, never into another task's output.

The first tests drive the engine side (``localpar.engine.output``) in this process with a fake
publication queue, so that a full pipe can be simulated exactly; the others run tasks."""

from __future__ import annotations

import io
import re
import threading
import time
from typing import Any, Iterator, List, Tuple

import pytest
from conftest import HANG_GUARD, wait_for_file

from localpar import Client
from localpar.engine.output import FLUSH_SIZE, Flusher, TaskOutput, TaskStream
from localpar.wire import messages

pytestmark = pytest.mark.timeout(120)


# -- the engine side, with a fake queue -----------------------------------------------------------
class FakeQueue:
    """A publication queue whose pipe is full while `full` is set."""

    def __init__(self) -> None:
        self.full = False
        self.frames: List[bytes] = []
        self.lock = threading.Lock()

    def try_put(self, payload: bytes) -> bool:
        with self.lock:
            if self.full:
                return False
            self.frames.append(payload)
            return True

    def put(self, payload: bytes) -> None:
        assert not self.full, "a task's write waited for room in the pipe"
        with self.lock:
            self.frames.append(payload)

    def text(self, name: str = "stdout") -> str:
        outputs = [messages.decode(f) for f in self.frames]
        return "".join(o.text for o in outputs if o.name == name)


def task_output(queue: FakeQueue) -> Tuple[TaskOutput, TaskStream, TaskStream, io.StringIO]:
    """A task's output, as the engine sets it up, and its stdout, stderr and fallback."""
    fallback = io.StringIO()
    output = TaskOutput(queue, 0, 1, Flusher(), lambda: None, set())  # type: ignore[arg-type]
    stdout, stderr = TaskStream("stdout"), TaskStream("stderr")
    stdout.use(output, fallback)
    stderr.use(output, fallback)
    return output, stdout, stderr, fallback


def test_a_full_pipe_neither_stalls_the_task_nor_loses_text() -> None:
    """While the pipe is full, writes return at once (never `put`) and keep their text;
    once it has room, all of it goes out, in order, once, in few frames."""
    queue = FakeQueue()
    output, stdout, _, _ = task_output(queue)
    queue.full = True
    lines = [f"line {i}\n" for i in range(20000)]
    for line in lines:
        stdout.write(line)
    assert queue.frames == []
    queue.full = False
    sent = output.close()
    assert queue.text() == "".join(lines)
    assert sent == len(queue.frames) <= len("".join(lines)) // FLUSH_SIZE + 1  # coalesced, not one per write
    assert all(len(f) <= 4092 for f in queue.frames)  # each one atomic frame


def test_stdout_and_stderr_keep_their_order_and_wide_characters_fit_a_frame() -> None:
    queue = FakeQueue()
    output, stdout, stderr, _ = task_output(queue)
    stdout.write("a\n")
    stderr.write("oops\n")
    stdout.write("é€😀" * 2000 + "\n")  # 4 bytes a character at most: split further
    output.close()
    names = [messages.decode(f).name for f in queue.frames]
    assert names[:2] == ["stdout", "stderr"] and set(names[2:]) == {"stdout"}
    assert queue.text() == "a\n" + "é€😀" * 2000 + "\n" and queue.text("stderr") == "oops\n"
    assert all(len(f) <= 4092 for f in queue.frames)


def test_writes_after_the_task_returned_go_to_the_engines_own_stream() -> None:
    queue = FakeQueue()
    output, stdout, _, fallback = task_output(queue)
    stdout.write("mine\n")
    assert output.close() == 1
    stdout.write("late\n")  # a thread the task left running
    assert queue.text() == "mine\n" and fallback.getvalue() == "late\n"


# -- tasks on a cluster --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def c() -> Iterator[Client]:
    with Client(2) as client:
        yield client


def wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.005)


def print_wait_print(path: str) -> str:
    import sys

    print("before")
    print("warn", file=sys.stderr)
    wait_for_file(path)
    print("after")
    return "done"


def test_stdout_grows_while_the_task_runs(c: Client, tmp_path: Any) -> None:
    """The task waits for a file the test creates only once it has seen the task's first
    print on ``ar.stdout``: without live output this never happens (the task times out)."""
    path = str(tmp_path / "go")
    ar = c[0].apply_async(print_wait_print, path)
    wait_until(lambda: ar.stdout == "before\n" and ar.stderr == "warn\n", "the first print, live")
    assert not ar.done()
    open(path, "w").close()
    assert ar.get(HANG_GUARD) == "done"
    assert (ar.stdout, ar.stderr) == ("before\nafter\n", "warn\n")


def print_lines(n: int, width: int) -> int:
    import sys

    for i in range(n):
        sys.stdout.write(f"{i:>{width}}\n")
    return n


def test_all_output_is_on_stdout_before_the_result(c: Client) -> None:
    """Right when each result is ready, ``ar.stdout`` holds everything the task printed:
    a task's last frames are usually read in the same batch as its Result, which the
    collector reads first, so only the count keeps the result from completing early."""
    for _ in range(30):
        ar = c[:].apply_async(print_lines, 3000, 60)
        assert ar.get(HANG_GUARD) == [3000, 3000]
        expected = "".join(f"{i:>60}\n" for i in range(3000))
        assert ar.stdout == [expected, expected]


def print_from_two_threads(n: int) -> int:
    import threading

    def worker() -> None:
        for i in range(n):
            print(f"thread {i}\n", end="")  # one write per line: print's own two may interleave

    t = threading.Thread(target=worker)
    t.start()
    for i in range(n):
        print(f"main {i}\n", end="")
    t.join()
    return n


def test_many_quick_prints_from_the_task_and_its_thread_arrive_once_each(c: Client) -> None:
    n = 20000
    ar = c[0].apply_async(print_from_two_threads, n)
    assert ar.get(HANG_GUARD) == n
    lines = ar.stdout.splitlines()
    assert len(lines) == 2 * n
    assert [x for x in lines if x.startswith("main ")] == [f"main {i}" for i in range(n)]
    assert [x for x in lines if x.startswith("thread ")] == [f"thread {i}" for i in range(n)]
    record = ar.records[0]
    assert record.pubs_expected is not None and record.pubs_expected < n // 20  # coalesced frames


def start_chatty_thread() -> None:
    """Leave a thread running that prints until `stop_chatty` is set."""
    import threading
    import time

    global chatty_stop, chatty_count
    chatty_stop = threading.Event()
    chatty_count = 0

    def chatter() -> None:
        global chatty_count
        while not chatty_stop.is_set():
            print("stray")
            chatty_count += 1
            time.sleep(0.001)

    threading.Thread(target=chatter, daemon=True).start()


def print_while_the_stray_thread_prints() -> int:
    import time

    seen = chatty_count  # noqa: F821 (in the engine's namespace)
    deadline = time.monotonic() + 20
    while chatty_count < seen + 20 and time.monotonic() < deadline:  # noqa: F821
        print("mine")
        time.sleep(0.001)
    return chatty_count - seen  # noqa: F821


def stop_chatty_thread() -> None:
    chatty_stop.set()  # noqa: F821


def test_a_thread_left_by_an_earlier_task_does_not_print_into_a_later_one(c: Client) -> None:
    view = c[1]
    view.apply_sync(start_chatty_thread)
    try:
        ar = view.apply_async(print_while_the_stray_thread_prints)
        assert ar.get(HANG_GUARD) >= 20  # the stray thread printed all along the task
        assert set(ar.stdout.splitlines()) == {"mine"}
    finally:
        view.apply_sync(stop_chatty_thread)


def write_blocks_until_interrupted(size: int) -> int:
    import sys

    i = 0
    try:
        while True:
            sys.stdout.write(f"<{i}:" + "x" * size + ">\n")  # one write: all of it or none
            i += 1
    except KeyboardInterrupt:
        pass
    print("END")
    return i


def test_interrupts_landing_in_a_write_neither_tear_nor_repeat_output(c: Client) -> None:
    """Big writes keep the task inside localpar's framing most of the time, so interrupts
    land there; each must surface in the task (between two writes), leaving the output
    whole: every block once, in order, then END, and the count right (no early result)."""
    block = re.compile(r"<(\d+):x{10000}>\n")
    for _ in range(10):
        ar = c[0].apply_async(write_blocks_until_interrupted, 10000)
        wait_until(lambda ar=ar: len(ar.stdout) > 50000, "the task's first blocks")  # type: ignore[misc]
        c.interrupt(0)
        written = ar.get(HANG_GUARD)
        out = ar.stdout
        assert out.endswith("END\n")
        numbers = [int(m.group(1)) for m in block.finditer(out)]
        assert numbers == list(range(len(numbers)))
        assert len(numbers) - written in (0, 1)  # 1: it landed in a write, raised as that write returned
        assert len(out) == sum(len(m.group(0)) for m in block.finditer(out)) + len("END\n")
    assert c[0].apply_sync(print_lines, 3, 1) == 3
