"""Process trees: every process a task started goes with its engine.

Each test starts, from a task, a child (``sleep``), a child with a child of its
own (``sh`` and its ``sleep``), and a double-forked daemon in a session of its
own (``setsid sh -c 'sleep &'``: its parent exits at once, so it is an orphan
from the start), then ends the engine one way and checks all four are gone.
Only those pids are ever killed by the tests themselves, and only if a test failed.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List

import psutil
import pytest
from conftest import pid_gone, wait_pids_gone

from localpar import Client, EngineError
from localpar.processes import clusters, proctree

HANG_GUARD = 10.0


def start_tree(unmarked: bool = True) -> List[int]:
    """Run on an engine: a child, a child with a grandchild, and a setsid daemon; their pids.

    With `unmarked`, also a setsid daemon started with an empty environment: it lacks the
    engine's mark, so only the engine's tree (it is a subreaper) leads to it.
    """
    import shutil
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    parent = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    daemon = subprocess.run(
        ["setsid", "sh", "-c", "sleep 300 >/dev/null 2>&1 </dev/null & echo $!"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    pids = [child.pid, parent.pid, grandchild, int(daemon.stdout)]
    if unmarked:
        setsid, sh, sleep = (shutil.which(p) for p in ("setsid", "sh", "sleep"))
        hidden = subprocess.run(
            [setsid, sh, "-c", f"{sleep} 300 >/dev/null 2>&1 </dev/null & echo $!"],
            capture_output=True, text=True, timeout=10, env={},
        )  # fmt: skip
        pids.append(int(hidden.stdout))
    return pids


def start_tree_and_wait(go: str) -> List[int]:
    """start_tree, then stay busy until `go` exists (the engine is busy when the test ends it)."""
    pids = start_tree()
    from localpar.datapub import publish_data

    publish_data({"pids": pids})
    deadline = time.monotonic() + 20
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids


def assert_all_gone(pids: List[int]) -> None:
    survivors = wait_pids_gone(pids, HANG_GUARD)
    for pid in survivors:  # only what this test's task started
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not survivors, f"processes a task started are still running: {survivors}"


def started_by_running_task(c: Client, engine: int, tmp_path: Path) -> List[int]:
    ar = c[engine].apply_async(start_tree_and_wait, str(tmp_path / "never"))
    deadline = time.monotonic() + HANG_GUARD
    while "pids" not in ar.data:
        assert time.monotonic() < deadline, "the task did not start its processes"
        time.sleep(0.02)
    pids: List[int] = ar.data["pids"]
    assert not any(pid_gone(p) for p in pids)
    return pids


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_close_ends_what_tasks_started(leak_check: object, tmp_path: Path, busy: bool) -> None:
    with Client(2) as c:
        pids = c[0].apply_sync(start_tree)
        if busy:  # a running task: its engine is terminated, it cannot end its own tree
            pids += started_by_running_task(c, 1, tmp_path)
        assert not any(pid_gone(p) for p in pids)
    assert_all_gone(pids)


def test_garbage_collection_ends_what_tasks_started() -> None:
    c = Client(1)
    cluster = c.cluster_id
    pids = c[0].apply_sync(start_tree)
    del c
    try:
        gc.collect()
        assert_all_gone(pids)
    finally:
        for state in clusters.open_clusters():
            if state.cluster_id == cluster:
                state.close()


def test_restart_engine_ends_what_the_old_engine_started(leak_check: object, tmp_path: Path) -> None:
    with Client(2) as c:
        pids = started_by_running_task(c, 0, tmp_path)
        c.restart_engine(0)
        assert_all_gone(pids)
        assert c[0].apply_sync(os.getpid) not in pids


def end_engine_0(c: Client, how: str) -> None:
    """Engine 0 dies by SIGKILL or by its own exit; returns once the client has seen it."""
    if how == "sigkill":
        os.kill(c.engine_pids()[0], signal.SIGKILL)
    else:
        with pytest.raises(EngineError):
            c[0].apply_async(os._exit, 3).get(timeout=HANG_GUARD)
    assert c.wait_for_death(0, timeout=HANG_GUARD)


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_engine_death_ends_what_it_started(leak_check: object, tmp_path: Path, how: str) -> None:
    with Client(2) as c:
        pids = c[0].apply_sync(start_tree, unmarked=False)  # see proctree: after a death, marks find them
        end_engine_0(c, how)
        assert_all_gone(pids)  # the client ends them: the engine could not


KEPT: List[object] = []


def fork_without_exec() -> List[int]:
    """Run on an engine: what a task forks without exec (its environment in /proc never
    had the engine's mark): a fork-started ``multiprocessing.Process``, a fork-started
    ``Pool``'s workers, a bare ``os.fork()``; their pids."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    helper = ctx.Process(target=time.sleep, args=(300,))
    helper.start()
    pool = ctx.Pool(2)
    KEPT.append(pool)  # a Pool ends its workers when collected
    workers = [p.pid for p in pool._pool]  # type: ignore[attr-defined]
    child = os.fork()
    if child == 0:
        try:
            time.sleep(300)
        finally:
            os._exit(0)
    return [helper.pid, *workers, child]  # type: ignore[list-item]


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_engine_death_ends_what_its_tasks_forked(leak_check: object, how: str) -> None:
    """An engine leads its process group: what its tasks forked is in it, and goes when it dies."""
    with Client(2) as c:
        pids = c[0].apply_sync(fork_without_exec)
        assert all(os.getpgid(p) == c.engine_pids()[0] for p in pids)
        end_engine_0(c, how)
        assert_all_gone(pids)
        assert c[1].apply_sync(os.getpid) == c.engine_pids()[1]  # the other engine's group is left alone


def test_close_ends_what_a_dead_engines_tasks_forked(leak_check: object) -> None:
    with Client(1) as c:
        pids = c[0].apply_sync(fork_without_exec)
        with pytest.raises(EngineError):
            c[0].apply_async(os._exit, 3).get(timeout=HANG_GUARD)
    assert_all_gone(pids)


def test_a_scan_never_takes_this_process_group_nor_a_running_leaders() -> None:
    """Groups are taken only when their leader is gone: never the caller's own, nor one whose
    leader runs (its pid is someone else's now, or it ends its own tree)."""
    leader = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + HANG_GUARD
        while not psutil.Process(leader.pid).children():  # its sleep is in its group
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not proctree.scan(groups=[os.getpgrp()])
        assert not proctree.scan(groups=[leader.pid])
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


CHILD = """
import os, sys, time
from localpar import Client
sys.path.insert(0, {tests!r})
from test_proctree import start_tree

c = Client(1)
print("PIDS", *c[0].apply_sync(start_tree), flush=True)
print("ENGINE", c.engine_pids()[0], flush=True)
if sys.argv[1] == "wait":
    time.sleep(60)
"""


def run_child(tmp_path: Path, mode: str) -> Dict[str, List[int]]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(tests=str(Path(__file__).parent))))
    proc = subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    info: Dict[str, List[int]] = {}
    try:
        assert proc.stdout is not None
        while "ENGINE" not in info:
            line = proc.stdout.readline()  # the child prints within seconds, or exits (EOF)
            if not line:
                raise AssertionError(f"the child exited early: {proc.stderr.read() if proc.stderr else ''}")
            key, *rest = line.split()
            info[key] = [int(x) for x in rest]
        if mode == "wait":
            proc.kill()  # the client is SIGKILLed: only the lifeline tells the engine
        proc.wait(HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(HANG_GUARD)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return info


@pytest.mark.parametrize("mode", ["exit", "wait"], ids=["interpreter-exit", "client-sigkill"])
def test_the_client_ending_ends_what_tasks_started(tmp_path: Path, mode: str) -> None:
    info = run_child(tmp_path, mode)
    assert_all_gone(info["PIDS"] + info["ENGINE"])


def test_a_mark_names_one_engine_exactly() -> None:
    """An engine's mark must not match another engine whose pid starts with the same digits."""
    from localpar.processes import proctree

    env = dict(os.environ, **{proctree.MARK: "feedf00d:1234"})
    proc = subprocess.Popen(["sleep", "30"], env=env)
    try:
        found = lambda mark: proc.pid in [p.pid for p in proctree.scan(marks=[mark])]  # noqa: E731
        assert found("feedf00d:1234") and found("feedf00d:")
        assert not found("feedf00d:123") and not found("feedf00d:12345")
    finally:
        proc.kill()
        proc.wait(HANG_GUARD)


# -- ending: what needs no grace period ------------------------------------------------------
# Each test gives end() a grace far longer than its timeout: ending must not wait for it.
LONG_GRACE = 600.0


@pytest.mark.timeout(30)
def test_a_process_that_ignores_sigterm_is_killed_without_waiting_the_grace() -> None:
    ignorer = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert ignorer.stdout is not None and ignorer.stdout.readline() == "ready\n"
        assert proctree.end([psutil.Process(ignorer.pid)], grace=LONG_GRACE) == []
        assert pid_gone(ignorer.pid)  # end() reaped it: it was a child of this process
    finally:
        if ignorer.poll() is None:
            ignorer.kill()
        ignorer.wait(HANG_GUARD)
        assert ignorer.stdout is not None
        ignorer.stdout.close()


@pytest.mark.timeout(30)
def test_an_exited_orphan_counts_as_ended_before_its_reaper_reaps_it() -> None:
    """A zombie whose parent does not reap it (as init may be slow to): exited is ended."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import os, time; pid = os.fork()\n"
         "if pid == 0: os._exit(0)\n"
         "print(pid, flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        zombie = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + HANG_GUARD
        while zombie.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert zombie.status() == psutil.STATUS_ZOMBIE
        assert proctree.end([zombie], grace=LONG_GRACE) == []
    finally:
        parent.kill()
        parent.wait(HANG_GUARD)
        assert parent.stdout is not None
        parent.stdout.close()
