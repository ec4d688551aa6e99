"""The Manager dict: when it starts, values only cloudpickle can pickle, and a Manager that stops answering."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest
from conftest import HANG_GUARD, wait_for_manager

from localpar import Client, EngineError
from localpar.datapub import publish_data


@dataclasses.dataclass
class Point:  # defined in a test module run as __main__-like code: cloudpickle sends it by value
    x: int


def publish_unusual_values_then_more(seconds: float) -> int:
    publish_data({"f": lambda v: v + 1, "p": Point(1), "n": 0})
    time.sleep(seconds)  # the engine's store writer has written them meanwhile
    for n in range(1, 20):
        publish_data({"n": n})
    return n


def test_the_manager_starts_at_the_first_publication_and_not_before(leak_check):
    """A cluster that publishes nothing starts no Manager: it would compete with the first
    calls for a core (a fork and a process boot) for nothing."""
    with Client(1) as c:
        for _ in range(20):  # 0.4 s of tasks: a Manager started with the client would be up by now
            c[0].apply_sync(time.sleep, 0.02)
        assert c.manager_pid is None and c.datastore_error is None
        ar = c[0].apply_async(publish_data, {"first": "publication"})
        ar.get(timeout=HANG_GUARD)
        deadline = time.monotonic() + HANG_GUARD
        while c.manager_pid is None:
            assert time.monotonic() < deadline and c.datastore_error is None, c.datastore_error
            time.sleep(0.01)
        assert ar.data == {"first": "publication"}
        ar = c[0].apply_async(publish_unusual_values_then_more, 0.5)  # the store writer has it now
        assert ar.get(timeout=HANG_GUARD) == 19 and ar.data["n"] == 19


def test_values_only_cloudpickle_can_pickle_do_not_break_the_durable_copy(leak_check):
    with Client(1) as c:
        wait_for_manager(c)
        ar = c[0].apply_async(publish_unusual_values_then_more, 0.5)
        assert ar.get(timeout=HANG_GUARD) == 19
        assert ar.data["n"] == 19 and ar.data["f"](1) == 2
        again = c[0].apply_async(publish_unusual_values_then_more, 0.3)  # the next task too
        assert again.get(timeout=HANG_GUARD) == 19
        assert c.datastore_error is None


def publish_then_die(go: str) -> None:
    publish_data({"f": lambda v: v * 3, "step": 1})
    deadline = time.monotonic() + 10
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(9)


def publish_for(seconds: float) -> int:
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n += 1
        publish_data({"n": n})
        time.sleep(0.005)
    return n


def test_a_stopped_manager_blocks_neither_publish_data_nor_close(leak_check):
    """SIGSTOP the Manager: publications keep flowing (only the engine's store writer waits),
    an engine death does not wait for it for long, and close() kills it without asking."""
    with Client(2) as c:
        manager = wait_for_manager(c)
        os.kill(manager, signal.SIGSTOP)
        try:
            ar = c[:].apply_async(publish_for, 0.8)  # several store writes fall due meanwhile
            assert min(ar.get(timeout=HANG_GUARD)) > 10
            assert [d["n"] for d in ar.data] == ar.get()
            victim = c[0].apply_async(publish_then_die, "/")  # "/" exists: it dies at once
            with pytest.raises(EngineError):
                victim.get(timeout=HANG_GUARD)  # recovery asks the Manager, with a timeout
            assert c[1].apply_sync(publish_for, 0.1) > 0
        finally:
            started = time.monotonic()
        # leaving the with block closes the client; the Manager is still stopped
    assert time.monotonic() - started < HANG_GUARD
