"""Lifecycle: however a client ends, nothing of its cluster outlives it.

Covers close(), the context manager, garbage collection, interpreter exit (clean
and by an exception), Ctrl-C while waiting, aborting queued tasks and
interrupting running ones.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import CHILD_CLIENT_PRELUDE, LeakChecker, pid_gone, shm_segments, wait_for_manager, wait_pids_gone

from localpar import AsyncResult, Client, ClientClosedError, EngineError, RemoteError, TaskAborted
from localpar.datapub import publish_data

HANG_GUARD = 10.0


def engine_pid() -> int:
    return os.getpid()


def quick(x: int) -> int:
    return x + 1


def wait_for_file_then(path: str, value: str) -> str:
    deadline = time.monotonic() + HANG_GUARD
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def loop_until_interrupted() -> str:
    publish_data({"running": True})
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "not interrupted"


# -- in-process endings ----------------------------------------------------------------------


def test_close_releases_everything_even_while_the_client_object_lives() -> None:
    checker = LeakChecker()
    before = checker.snapshot()
    c = Client(2)
    checker.cluster_ids.add(c.cluster_id)
    assert c[:].apply_async(quick, 1).get(timeout=HANG_GUARD) == [2, 2]
    pids = [*c.engine_pids().values(), wait_for_manager(c)]
    c.close()
    c.close()  # idempotent
    assert not wait_pids_gone(pids)
    checker.assert_clean(before)  # `c` is still referenced here: close() alone must free it all
    with pytest.raises(ClientClosedError, match="closed"):
        c[:].apply_async(quick, 1)


def test_with_block_closes_the_cluster(leak_check: LeakChecker) -> None:
    with Client(2) as c:
        pids = [*c.engine_pids().values(), wait_for_manager(c)]
        assert c[:].apply_async(quick, 1).get(timeout=HANG_GUARD) == [2, 2]
    assert not wait_pids_gone(pids)


def test_with_block_closes_the_cluster_when_its_body_raises(leak_check: LeakChecker) -> None:
    pids: List[int] = []
    with pytest.raises(ZeroDivisionError):
        with Client(2) as c:
            pids += c.engine_pids().values()
            1 / 0  # noqa: B018
    assert not wait_pids_gone(pids)


def test_close_fails_pending_tasks_and_stops_busy_engines(leak_check: LeakChecker, tmp_path: Path) -> None:
    with Client(2) as c:
        pids = list(c.engine_pids().values())
        busy = c[0].apply_async(wait_for_file_then, str(tmp_path / "never"), "late")
        queued = c[0].apply_async(quick, 1)
    with pytest.raises(ClientClosedError):
        busy.get(timeout=HANG_GUARD)
    with pytest.raises(ClientClosedError):
        queued.get(timeout=HANG_GUARD)
    assert not wait_pids_gone(pids)


def test_garbage_collection_closes_the_cluster() -> None:
    from localpar.processes import clusters

    c = Client(2)
    cluster = c.cluster_id
    pids = [*c.engine_pids().values(), wait_for_manager(c)]
    assert c[:].apply_async(quick, 1).get(timeout=HANG_GUARD) == [2, 2]
    del c
    try:
        gc.collect()
        survivors = wait_pids_gone(pids)
        assert not survivors, f"an unreferenced Client must close its cluster; still running: {survivors}"
        assert not [t for t in threading.enumerate() if cluster in t.name]
    finally:  # do not let a failure here leak a cluster into later tests
        for state in clusters.open_clusters():
            if state.cluster_id == cluster:
                state.close()


# -- interpreter exit and Ctrl-C, in a child interpreter -------------------------------------

EXIT_SCRIPT = (
    CHILD_CLIENT_PRELUDE
    + """
print("ENGINES", *c.engine_pids().values(), flush=True)
print("MANAGER", c.manager_pid, flush=True)
print("CLUSTER", c.cluster_id, flush=True)
if sys.argv[1] == "busy":  # a task is running and its 2 MB argument is in shared memory
    ar = start_busy_task(c, deadline)
    print("SEGMENTS", len([n for n in os.listdir("/dev/shm") if n.startswith(f"localpar-{c.cluster_id}-")]), flush=True)
if sys.argv[1] == "raise":
    raise SystemError("top-level failure")
"""
)


def parse(out: str) -> Dict[str, List[str]]:
    info: Dict[str, List[str]] = {}
    for line in out.splitlines():
        if line.strip():
            key, *rest = line.split()
            info[key] = rest
    return info


@pytest.mark.parametrize(("mode", "code"), [("exit", 0), ("raise", 1), ("busy", 0)])
def test_interpreter_exit_without_close_stops_the_cluster(tmp_path: Path, mode: str, code: int) -> None:
    script = tmp_path / "exit_child.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script), mode], capture_output=True, text=True, timeout=60, start_new_session=True
    )
    assert done.returncode == code, done.stderr
    if mode == "raise":
        assert "top-level failure" in done.stderr
    info = parse(done.stdout)
    pids = [int(p) for p in info["ENGINES"] + info["MANAGER"]]
    cluster = info["CLUSTER"][0]
    if mode == "busy":
        assert int(info["SEGMENTS"][0]) >= 1
    survivors = wait_pids_gone(pids)
    try:
        assert not survivors, f"still running after the interpreter exited: {survivors}"
        assert not shm_segments(cluster)
    finally:
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)


NESTED_SCRIPT = """
import json, os, sys, time
from localpar import Client
from localpar.datapub import publish_data

def open_a_cluster_and_leave_it(then_wait):
    inner = Client(1)  # never closed by the task
    inner[0].apply_sync(publish_data, {"first": "publication"})  # which starts its Manager
    deadline = time.monotonic() + 10
    while inner.manager_pid is None and time.monotonic() < deadline:
        time.sleep(0.01)
    publish_data({"inner": (inner.cluster_id, [*inner.engine_pids().values(), inner.manager_pid])})
    time.sleep(then_wait)

c = Client(1)
ar = c[0].apply_async(open_a_cluster_and_leave_it, 0 if sys.argv[1] == "idle" else 30)
deadline = time.monotonic() + 20
while "inner" not in ar.data and time.monotonic() < deadline:
    time.sleep(0.01)
if sys.argv[1] == "idle":
    ar.get(timeout=20)
cluster, pids = ar.data["inner"]
print(json.dumps({"cluster": cluster, "pids": pids}), flush=True)
if sys.argv[1] == "killed":
    os.kill(os.getpid(), 9)
c.close()
"""


@pytest.mark.parametrize("ending", ["idle", "busy", "killed"])
def test_a_client_left_open_inside_a_task_ends_with_its_engine_and_leaves_nothing(tmp_path: Path, ending: str) -> None:
    """A task opens a cluster and leaves it open; the outer cluster closes (its engine idle or
    busy in that task) or its client is SIGKILLed: the inner cluster's processes and shared
    memory (its spin page, named after the outer engine) go too, and nothing is printed."""
    script = tmp_path / "nested.py"
    script.write_text(NESTED_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), ending], capture_output=True, text=True, timeout=60, start_new_session=True
    )
    assert done.returncode == (-signal.SIGKILL if ending == "killed" else 0), done.stderr
    inner = json.loads(done.stdout)
    survivors = wait_pids_gone(inner["pids"], HANG_GUARD)
    try:
        assert not survivors, f"the inner cluster's processes still run: {survivors}"
        assert not shm_segments(inner["cluster"]), "the inner cluster left shared memory"
        assert done.stderr == "", done.stderr
    finally:
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        for name in shm_segments(inner["cluster"]):
            os.unlink(os.path.join("/dev/shm", name))


CTRL_C_SCRIPT = """
import os, time
from localpar import Client, RemoteError
from localpar.datapub import publish_data

def long_task():
    publish_data({"running": True})
    time.sleep(120)
    return "long"

def quick(x):
    return x + 1

with Client(2) as c:
    deadline = time.monotonic() + 10
    c[1].apply_sync(publish_data, {"first": "publication"})  # which starts the Manager
    while c.manager_pid is None and time.monotonic() < deadline:
        time.sleep(0.02)
    ar = c[0].apply_async(long_task)
    while not ar.data and time.monotonic() < deadline:
        time.sleep(0.02)
    print("ENGINES", *c.engine_pids().values(), flush=True)
    print("MANAGER", c.manager_pid, flush=True)
    try:
        print("READY", flush=True)
        ar.get(timeout=120)
        print("NO-KI", flush=True)
    except KeyboardInterrupt:
        print("KI", flush=True)
    print("IDS", *c.ids, flush=True)
    print("STILL-RUNNING", not ar.ready(), flush=True)
    print("QUICK", c[1].apply_async(quick, 41).get(timeout=10), flush=True)
    c.interrupt(0)
    try:
        ar.get(timeout=10)
    except RemoteError as e:
        print("LONG", e.ename, flush=True)
    print("ENGINE0", c[0].apply_async(quick, 1).get(timeout=10), flush=True)
    print("MANAGER-ALIVE", c.manager_pid is not None and os.path.exists(f"/proc/{c.manager_pid}"), flush=True)
"""


def test_ctrl_c_in_get_interrupts_the_wait_not_the_cluster(tmp_path: Path) -> None:
    script = tmp_path / "ctrl_c_child.py"
    script.write_text(textwrap.dedent(CTRL_C_SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: the signal reaches it alone, as from a terminal
    )  # fmt: skip
    assert proc.stdout is not None
    lines: List[str] = []
    try:
        while not lines or lines[-1] != "READY":
            line = proc.stdout.readline()
            assert line, f"the child ended early: {proc.stderr.read() if proc.stderr else ''}"
            lines.append(line.strip())
        time.sleep(0.2)  # let it block in get()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        out, err = proc.communicate(timeout=30)  # the long task takes 120 s: this proves get() returned
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    info = parse("\n".join(lines) + "\n" + out)
    assert proc.returncode == 0, err
    assert "KI" in info and "NO-KI" not in info
    assert info["IDS"] == ["0", "1"]  # no engine was killed by the Ctrl-C
    assert info["STILL-RUNNING"] == ["True"]  # nor was the task interrupted by it
    assert info["QUICK"] == ["42"]
    assert info["LONG"] == ["KeyboardInterrupt"]
    assert info["ENGINE0"] == ["2"]
    assert info["MANAGER-ALIVE"] == ["True"]
    pids = [int(p) for p in info["ENGINES"] + info["MANAGER"]]
    assert not wait_pids_gone(pids)


# -- cancelling -------------------------------------------------------------------------------


def test_abort_drops_queued_tasks(leak_check: LeakChecker, tmp_path: Path) -> None:
    go = tmp_path / "go"
    with Client(2) as c:
        first = c[0].apply_async(wait_for_file_then, str(go), "first")
        queued = [c[0].apply_async(quick, i) for i in range(4)]
        for ar in queued[:3]:
            ar.abort()
        go.touch()
        assert first.get(timeout=HANG_GUARD) == "first"
        for ar in queued[:3]:
            with pytest.raises(TaskAborted):
                ar.get(timeout=HANG_GUARD)
            assert ar.metadata["status"] == "aborted"
        assert queued[3].get(timeout=HANG_GUARD) == 4  # not aborted: runs
        assert c[0].apply_async(quick, 10).get(timeout=HANG_GUARD) == 11


def test_abort_drops_load_balanced_tasks_not_yet_started(leak_check: LeakChecker, tmp_path: Path) -> None:
    """Whether still in the client's queue or prefetched by an engine, they never run."""
    go = tmp_path / "go"
    with Client(2) as c:
        lb = c.load_balanced_view()
        busy = [lb.apply_async(wait_for_file_then, str(go), "busy") for _ in range(2)]
        waiting = [lb.apply_async(quick, i) for i in range(6)]
        c.abort(waiting)
        go.touch()
        assert [ar.get(timeout=HANG_GUARD) for ar in busy] == ["busy", "busy"]
        for ar in waiting:
            with pytest.raises(TaskAborted):
                ar.get(timeout=HANG_GUARD)
            assert ar.metadata["status"] == "aborted"
        assert lb.apply_async(quick, 1).get(timeout=HANG_GUARD) == 2


def wait_running(ar: AsyncResult) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not ar.data:
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.01)


def test_client_interrupt_raises_keyboard_interrupt_in_the_running_task(leak_check: LeakChecker) -> None:
    with Client(2) as c:
        ar = c[0].apply_async(loop_until_interrupted)
        other = c[1].apply_async(loop_until_interrupted)
        wait_running(ar)
        wait_running(other)
        c.interrupt([0])
        with pytest.raises(RemoteError) as info:
            ar.get(timeout=HANG_GUARD)
        assert info.value.ename == "KeyboardInterrupt"
        assert not other.ready()  # only the targeted engine
        assert c[0].apply_async(quick, 1).get(timeout=HANG_GUARD) == 2
        c[1].interrupt()  # the view form
        with pytest.raises(RemoteError) as info:
            other.get(timeout=HANG_GUARD)
        assert info.value.ename == "KeyboardInterrupt"
        assert c[1].apply_async(quick, 2).get(timeout=HANG_GUARD) == 3
        assert c.ids == [0, 1]


def loop_quietly() -> str:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        time.sleep(0.001)
    return "not interrupted"


def test_an_interrupt_right_after_the_call_stops_the_task_before_or_as_it_starts(leak_check: LeakChecker) -> None:
    """No wait between the call and the interrupt: the engine may not have read the task yet
    (it was dropped then, 39 times in 40).  The interrupt names the task, whatever the timing."""
    with Client(1) as c:
        for _ in range(20):
            ar = c[0].apply_async(loop_quietly)
            behind = c[0].apply_async(quick, 1)  # queued behind it: runs as usual
            c.interrupt()
            with pytest.raises(RemoteError) as info:
                ar.get(timeout=HANG_GUARD)
            assert info.value.ename == "KeyboardInterrupt"
            assert behind.get(timeout=HANG_GUARD) == 2


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_interrupting_idle_engines_does_no_harm(leak_check: LeakChecker, method: str) -> None:
    """Even right after Client() returns, while engines may still be starting up."""
    with Client(2, start_method=method) as c:
        c.interrupt()
        c[:].interrupt()
        assert c[:].apply_async(quick, 1).get(timeout=HANG_GUARD) == [2, 2]
        assert c.ids == [0, 1]
        assert not any(pid_gone(p) for p in c.engine_pids().values())


def leave_a_segment_named_after_this_engine(cluster_id: str, die_after: str) -> str:
    """What a cluster opened in this task and left open leaves: a segment of *another*
    cluster named after this engine (as the nested client's spin page is)."""
    from localpar.wire import sharedmem

    ref = sharedmem.export(cluster_id, memoryview(b"x"), label="spin")
    publish_data({"segment": ref.name})
    if die_after:
        wait_for_file_then(die_after, "")
        os._exit(3)
    time.sleep(HANG_GUARD)  # busy when the client closes
    return ref.name


@pytest.mark.parametrize("ending", ["busy-close", "death"])
def test_what_an_engine_made_for_another_cluster_goes_when_it_ends(tmp_path: Path, ending: str) -> None:
    """The mechanism behind the nested-client test, without its race: an engine TERMed busy
    (by close()) or dead on its own cannot remove what it made, so the client does, whatever
    cluster the segment belongs to (an inner engine often, but not always, does it first)."""
    import secrets

    other = secrets.token_hex(4)
    die_now = tmp_path / "die"
    c = Client(1)
    try:
        ar = c[0].apply_async(leave_a_segment_named_after_this_engine, other, str(die_now) if ending == "death" else "")
        deadline = time.monotonic() + HANG_GUARD
        while "segment" not in ar.data and time.monotonic() < deadline:
            time.sleep(0.01)
        assert shm_segments(other) == {ar.data["segment"]}
        if ending == "death":
            die_now.touch()
            with pytest.raises(EngineError):
                ar.get(timeout=HANG_GUARD)
            deadline = time.monotonic() + HANG_GUARD
            while shm_segments(other) and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        c.close()
    try:
        assert not shm_segments(other), "a segment the engine made outlived it"
    finally:
        for name in shm_segments(other):
            os.unlink(os.path.join("/dev/shm", name))
