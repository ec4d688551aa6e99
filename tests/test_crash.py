"""Crashes: a dying engine, a dying Manager, a SIGKILLed client.

Each crash must fail only what depended on the dead process, quickly and with an
error that names it, and must leave no process or shared memory behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Dict, List

import pytest
from conftest import CHILD_CLIENT_PRELUDE, pid_gone, shm_segments, wait_for_manager

from localpar import Client, EngineError, RemoteError
from localpar.datapub import publish_data

HANG_GUARD = 10.0  # seconds: only to fail instead of hanging


def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + 10
    while path and not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def publish_then_exit(code: int, go: str = "") -> None:
    publish_data({"step": 1, "note": "before death"})
    wait_for_file(go)
    os._exit(code)


def publish_then_sigkill(go: str) -> None:
    publish_data({"step": 1})
    wait_for_file(go)
    os.kill(os.getpid(), signal.SIGKILL)


def publish_then_segfault(go: str) -> None:
    import faulthandler

    faulthandler.disable()  # inherited from pytest: would print a traceback on the crash
    publish_data({"step": 1})
    wait_for_file(go)
    ctypes.string_at(0)


def engine_pid() -> int:
    return os.getpid()


def quick(x: int) -> int:
    return x * 2


DEATHS: Dict[str, tuple] = {
    "exit": (publish_then_exit, (3,), "exit code 3"),
    "sigkill": (publish_then_sigkill, (), "SIGKILL"),
    "segfault": (publish_then_segfault, (), "SIGSEGV"),
    # the dying task waits for a file, so that the second task is queued behind it
}


@pytest.mark.parametrize("how", sorted(DEATHS))
def test_engine_death_fails_only_its_tasks_and_can_be_replaced(leak_check: object, tmp_path: Path, how: str) -> None:
    go = tmp_path / "go"
    with Client(2) as c:
        f, args, expected = DEATHS[how]
        dying = c[0].apply_async(f, *args, go=str(go))
        queued = c[0].apply_async(quick, 1)  # waits behind the dying task
        go.touch()
        with pytest.raises(EngineError) as info:
            dying.get(timeout=HANG_GUARD)  # fails within seconds, not at the guard
        err = info.value
        assert err.engine_id == 0
        assert "engine 0" in str(err)
        assert expected in str(err)
        assert dying.data["step"] == 1  # published before the death: kept
        with pytest.raises(EngineError) as queued_info:
            queued.get(timeout=HANG_GUARD)
        assert queued_info.value.engine_id == 0
        assert c[1].apply_async(quick, 21).get(timeout=HANG_GUARD) == 42  # the other engine serves
        assert c.ids == [1]
        with pytest.raises(IndexError):
            c[0]
        c.restart_engine(0)
        assert c.ids == [0, 1]
        assert c[0].apply_async(quick, 5).get(timeout=HANG_GUARD) == 10
        new = c.add_engines(1)
        assert new == [2]
        assert c.ids == [0, 1, 2]
        assert c[2].apply_async(quick, 3).get(timeout=HANG_GUARD) == 6


def test_engine_death_in_a_multi_engine_call_is_a_composite_error(leak_check: object) -> None:
    with Client(2) as c:
        ar = c[:].apply_async(publish_then_exit, 3)
        with pytest.raises(RemoteError) as info:
            ar.get(timeout=HANG_GUARD)
        errors = getattr(info.value, "errors", [info.value])
        assert sorted(e.engine_id for e in errors) == [0, 1]
        assert all(isinstance(e, EngineError) for e in errors)
        assert ar.data == [{"step": 1, "note": "before death"}] * 2
        assert c.ids == []
        c.restart_engine(0)
        assert c[0].apply_async(quick, 1).get(timeout=HANG_GUARD) == 2


def test_engine_killed_from_outside_while_idle_is_noticed(leak_check: object) -> None:
    with Client(2) as c:
        pid = c.engine_pids()[1]
        os.kill(pid, signal.SIGKILL)
        assert c.wait_for_death(1, timeout=HANG_GUARD)
        assert c.ids == [0]
        assert c[0].apply_async(quick, 4).get(timeout=HANG_GUARD) == 8


def publish_once() -> str:
    publish_data({"x": 1})
    return "published"


def no_publish(x: int) -> int:
    return x + 1


def test_manager_death_makes_publish_fail_with_data_store_error(leak_check: object) -> None:
    with Client(2) as c:
        pid = wait_for_manager(c)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + HANG_GUARD
        while c.datastore_error is None:  # the client has seen the Manager die
            assert time.monotonic() < deadline, "the client did not notice the Manager's death"
            time.sleep(0.01)
        assert pid_gone(pid)
        ar = c[:].apply_async(publish_once)
        with pytest.raises(RemoteError) as info:
            ar.get(timeout=HANG_GUARD)
        errors = getattr(info.value, "errors", [info.value])
        assert len(errors) == 2
        for e in errors:
            assert e.ename == "DataStoreError"
            assert "Manager" in e.evalue
        assert c[:].apply_async(no_publish, 1).get(timeout=HANG_GUARD) == [2, 2]


def publish_until_refused(limit: float) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        publish_data({"t": time.monotonic()})
        time.sleep(0.01)
    return "never refused"


def test_manager_death_during_a_publishing_task_fails_that_task(leak_check: object) -> None:
    with Client(2) as c:
        pid = wait_for_manager(c)
        ar = c[0].apply_async(publish_until_refused, HANG_GUARD)
        deadline = time.monotonic() + HANG_GUARD
        while "t" not in ar.data:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(RemoteError) as info:
            ar.get(timeout=HANG_GUARD)
        assert info.value.ename == "DataStoreError"
        assert "Manager" in info.value.evalue
        assert c[1].apply_async(no_publish, 2).get(timeout=HANG_GUARD) == 3


# -- the client process is SIGKILLed ------------------------------------------------------

CHILD = (
    CHILD_CLIENT_PRELUDE
    + """
if sys.argv[1] == "busy":
    start_busy_task(c, deadline)
print("ENGINES", *c.engine_pids().values(), flush=True)
print("MANAGER", c.manager_pid, flush=True)
print("CLUSTER", c.cluster_id, flush=True)
print("READY", flush=True)
time.sleep(60)
"""
)


def start_child(tmp_path: Path, mode: str) -> tuple:
    script = tmp_path / "client_child.py"
    script.write_text(textwrap.dedent(CHILD))
    proc = subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    info: Dict[str, List[str]] = {}
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while "READY" not in info:
        assert time.monotonic() < deadline, "the child client did not start"
        line = proc.stdout.readline()
        if not line:
            proc.wait(5)
            raise AssertionError(f"child exited early: {proc.stderr.read() if proc.stderr else ''}")
        key, *rest = line.split()
        info[key] = rest
    return proc, info


@pytest.mark.parametrize("mode", ["idle", "busy"])
def test_children_exit_when_the_client_is_sigkilled(tmp_path: Path, mode: str, pids_gone: Callable) -> None:
    proc, info = start_child(tmp_path, mode)
    engines = [int(p) for p in info["ENGINES"]]
    manager = int(info["MANAGER"][0])
    cluster = info["CLUSTER"][0]
    try:
        assert len(engines) == 2
        assert not any(pid_gone(p) for p in [*engines, manager])
        if mode == "busy":
            assert shm_segments(cluster, data_only=True), "the busy task's argument should be in shared memory"
        proc.kill()
        proc.wait(5)
        survivors = pids_gone([*engines, manager], 10.0)
        assert not survivors, f"still running after the client was killed: {survivors}"
        assert not shm_segments(cluster)
    finally:
        for pid in [*engines, manager]:
            if not pid_gone(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
