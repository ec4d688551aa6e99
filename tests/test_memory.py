"""The memory limit, automatic restarts of dead engines, and ``c.status()``."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any, List

import psutil
import pytest

from localpar import Client, EngineError
from localpar.client.memory import format_size, parse_size
from localpar.datapub import publish_data

HANG_GUARD = 10.0
MiB = 1024 * 1024


def allocate(mib_per_step: int, steps: int) -> int:
    """Publish, then grow resident memory step by step (each chunk written, so it is resident)."""
    publish_data({"before": "allocating"})
    held: List[bytes] = []
    for _ in range(steps):
        held.append(b"x" * (mib_per_step * MiB))
        time.sleep(0.005)
    return len(held)


def replaced(c: Client, engine_id: int, old_pid: int) -> bool:
    """Wait (bounded) until engine `engine_id` runs again in a new process."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        pid = c.engine_pids().get(engine_id)
        if pid is not None and pid != old_pid:
            return True
        time.sleep(0.02)
    return False


def test_memory_limit_kills_the_engine_fails_its_task_and_replaces_it(leak_check: object) -> None:
    # A forked engine starts with this process's resident pages: the limit is set above them.
    limit = psutil.Process().memory_info().rss + 150 * MiB
    with Client(2, memory_limit=limit) as c:
        old = c.engine_pids()[0]
        ar = c[0].apply_async(allocate, 10, 200)  # up to 2 GB, never reached
        other = c[1].apply_async(allocate, 1, 5)  # stays small: runs to its end
        with pytest.raises(EngineError) as info:
            ar.get(timeout=HANG_GUARD)
        message = str(info.value)
        assert f"memory limit of {format_size(limit)} ({limit} bytes)" in message, message
        reached = re.search(r"resident memory reached [0-9.]+ MiB \((\d+) bytes\)", message)
        assert reached is not None and int(reached.group(1)) > limit, message
        assert ar.data == {"before": "allocating"}  # published before the kill: kept
        assert other.get(timeout=HANG_GUARD) == 5
        assert replaced(c, 0, old), "the engine over its limit was not replaced"
        assert c.ids == [0, 1]
        assert c[0].apply_sync(allocate, 1, 3) == 3


def test_memory_limit_strings() -> None:
    assert parse_size("2 GiB") == 2 * 1024**3
    assert parse_size("500MB") == 500 * 1000**2
    assert parse_size(1234) == 1234
    for bad in ("lots", "-1 GiB", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(TypeError):
        Client(1, memory_limit=[1])  # type: ignore[arg-type]


def test_restart_dead_replaces_a_dead_engine_with_the_same_id(leak_check: object) -> None:
    with Client(2, restart_dead=True) as c:
        old = c.engine_pids()[0]
        ar = c[0].apply_async(time.sleep, 30)
        os.kill(old, signal.SIGKILL)
        with pytest.raises(EngineError):
            ar.get(timeout=HANG_GUARD)  # its own task still fails
        assert replaced(c, 0, old)
        assert c.ids == [0, 1]
        assert c[0].apply_sync(os.getpid) != old
        assert c.status().engines[0].restarts == 1


def test_without_restart_dead_a_dead_engine_stays_dead(leak_check: object) -> None:
    with Client(2) as c:
        os.kill(c.engine_pids()[0], signal.SIGKILL)
        assert c.wait_for_death(0, timeout=HANG_GUARD)
        assert c.ids == [1]


def busy(go: str) -> str:
    """Use a CPU until `go` exists (bounded)."""
    end = time.monotonic() + 20
    while not os.path.exists(go) and time.monotonic() < end:
        pass
    return go


def test_status_shows_each_engine(leak_check: object, tmp_path: Path) -> None:
    go = tmp_path / "go"
    with Client(2) as c:
        c[:].apply_sync(os.getpid)
        ar = c[1].apply_async(busy, str(go))
        deadline = time.monotonic() + HANG_GUARD
        while c.status().engines[1].state == "idle" and time.monotonic() < deadline:
            time.sleep(0.01)
        status: Any = c.status()
        e0, e1 = status.engines[0], status.engines[1]
        assert (e0.pid, e1.pid) == (c.engine_pids()[0], c.engine_pids()[1])
        assert e0.state == "idle" and e0.tasks_done == 1 and e0.restarts == 0
        assert e1.state == "running" and e1.call == "busy" and e1.since is not None
        assert e0.rss > 0 and e1.cpu_percent >= 0
        text = str(status)
        assert "running busy" in text and str(e0.pid) in text and "idle" in text
        assert repr(status) == text
        html = status._repr_html_()
        assert html.startswith("<table") and "running busy" in html
        go.touch()
        assert ar.get(timeout=HANG_GUARD) == str(go)
        assert c.status().engines[1].state == "idle"
