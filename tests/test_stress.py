"""Interleavings: random delays at every hand-off of the core, many threads, Ctrl-C storms.

``localpar.chaos`` puts a random pause (nothing, a yield, a sleep of up to 0.5 ms) after
each lock is taken, before each future completes and before each wake is written.
Threads submit, get (with no timeout: the joins below are the watchdog), poll
``ar.data``, cancel and abort at once.  CI runs a fixed set of seeds; the ``slow``
variant draws new ones.
"""

from __future__ import annotations

import faulthandler
import os
import random
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Callable, List

import pytest
from conftest import HANG_GUARD

from localpar import Client, TaskAborted, chaos
from localpar.datapub import publish_data

WATCHDOG = 90.0  # seconds for a whole workload; a lost wake-up shows as a thread still running


def publish_and_square(x: int) -> int:
    publish_data({"x": x})
    publish_data({"y": x})
    return x * x


def workload(c: Client, seed: int, calls: int) -> List[BaseException]:
    """Several threads at once, each with its own mix; returns what went wrong."""
    errors: List[BaseException] = []
    rng = random.Random(seed)
    lview = c.load_balanced_view()

    def submitter(k: int) -> None:
        for i in range(calls):
            ar = c[i % len(c)].apply_async(publish_and_square, i)
            assert ar.get() == i * i
            assert ar.data == {"x": i, "y": i}

    def balanced(k: int) -> None:
        for _ in range(calls // 10):
            ar = lview.map_async(publish_and_square, range(10))
            assert ar.get() == [j * j for j in range(10)]

    def poller(k: int) -> None:
        for i in range(calls // 4):
            ar = c[:].apply_async(publish_and_square, i)
            while not ar.done():
                data = ar.data
                assert all(d in ({}, {"x": i}, {"x": i, "y": i}) for d in data)
            assert ar.data == [{"x": i, "y": i}] * len(c)

    def canceller(k: int) -> None:
        for _ in range(calls // 10):
            ars = [lview.apply_async(time.sleep, 0.001) for _ in range(8)]
            victim = ars[rng.randrange(8)]
            if victim.cancel():
                done, _ = futures.wait([victim], timeout=HANG_GUARD)
                assert victim in done
            for ar in ars:
                try:
                    ar.get()
                except (TaskAborted, futures.CancelledError):
                    pass  # aborted or cancelled: both are fine here

    def guarded(body: Callable[[int], None], k: int) -> Callable[[], None]:
        def run() -> None:
            try:
                body(k)
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [
        threading.Thread(target=guarded(body, k), name=f"stress-{body.__name__}-{k}")
        for k, body in enumerate([submitter, submitter, balanced, poller, canceller, submitter])
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + WATCHDOG
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        faulthandler.dump_traceback(file=sys.stderr)
        errors.append(AssertionError(f"threads never finished (a lost wake-up?): {stuck}"))
    return errors


@pytest.fixture
def chaotic():
    yield chaos.enable
    chaos.disable()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_delays_at_every_hand_off_lose_nothing(seed, chaotic, leak_check):
    chaotic(seed)
    with Client(2) as c:
        errors = workload(c, seed, calls=150)
    assert not errors, errors


@pytest.mark.slow
def test_random_delays_with_new_seeds_lose_nothing(chaotic, leak_check):
    seed = random.SystemRandom().randrange(1 << 30)
    print(f"chaos seed {seed}")
    chaotic(seed)
    with Client(3) as c:
        errors = workload(c, seed, calls=250)
    assert not errors, (seed, errors)


def spin_for(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return "spun"


def test_a_ctrl_c_storm_inside_data_and_get_leaves_the_client_working(leak_check):
    """Thousands of KeyboardInterrupts land inside ar.data, get(), ready() and submissions;
    afterwards another thread's get() completes and the client closes cleanly."""
    assert threading.current_thread() is threading.main_thread()
    armed = False
    landed = 0

    def on_sigint(signum: int, frame: object) -> None:
        nonlocal armed, landed
        if armed:  # only inside the try below; it disarms itself, so one lands per arming
            armed = False
            landed += 1
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    stop = threading.Event()

    def storm() -> None:
        rng = random.Random(7)
        for _ in range(3000):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(rng.random() * 0.0004)
        stop.set()

    try:
        with Client(2) as c:
            long_task = c[0].apply_async(spin_for, 60)
            storm_thread = threading.Thread(target=storm)
            storm_thread.start()
            i = 0
            while not stop.is_set():
                try:
                    armed = True
                    i += 1
                    _ = long_task.data
                    try:
                        long_task.get(timeout=0.001)
                    except TimeoutError:
                        pass
                    ar = c[1].apply_async(publish_and_square, i)
                    _ = ar.data
                    ar.ready()
                    assert ar.get() == i * i
                    armed = False
                except KeyboardInterrupt:
                    pass
            armed = False
            storm_thread.join(timeout=HANG_GUARD)
            assert landed > 1000
            c.interrupt(0)
            result: List[object] = []
            other = threading.Thread(target=lambda: result.append(c[1].apply_async(publish_and_square, 3).get()))
            other.start()
            other.join(timeout=HANG_GUARD)
            assert result == [9]
            assert c[:].apply_sync(publish_and_square, 4) == [16, 16]
    finally:
        signal.signal(signal.SIGINT, previous)
