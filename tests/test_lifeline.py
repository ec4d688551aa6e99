"""The lifeline module's exit status: right even while other threads start processes."""

from __future__ import annotations

import multiprocessing
import os
import select
import threading
import time

from localpar.processes.lifeline import death_fd, exit_status


def exit_with(code: int) -> None:
    os._exit(code)


def pause() -> None:
    time.sleep(0.05)


def test_exit_status_is_right_while_another_thread_starts_a_process() -> None:
    """Process.start() in any thread reaps every exited child (multiprocessing's cleanup):
    a join racing it used to see no child and report an unknown exit status."""
    ctx = multiprocessing.get_context("fork")
    wrong = []
    started = []  # by the other thread; joined at the end (only these: other tests' children are theirs)

    def start_another() -> None:
        process = ctx.Process(target=pause)
        started.append(process)
        process.start()

    for i in range(60):
        dying = ctx.Process(target=exit_with, args=(3,))
        dying.start()
        fd = death_fd(dying)
        try:
            select.select([fd], [], [], 10)  # it has exited, as the collector sees it
            other = threading.Thread(target=start_another)
            other.start()
            code = exit_status(dying, fd)
            other.join(10)
        finally:
            if fd != dying.sentinel:
                os.close(fd)
        dying.join(10)
        if code != 3:
            wrong.append((i, code))
    for child in started:
        child.join(10)
    assert not wrong, f"unknown or wrong exit status in {len(wrong)} of 60: {wrong[:5]}"
