"""Retries of load-balanced tasks (``retries``), and the resumed attempt (``resume_data``).

A task that raised, or whose engine died, runs again on an engine that has not failed it; what
it had published stays on ``ar.data`` and is what ``resume_data()`` returns in the next attempt.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Tuple

import psutil
import pytest

from localpar import Client, DependencyTimeout, EngineError, RemoteError, TaskTimeout

HANG_GUARD = 20.0
MiB = 1024 * 1024


def die_first_time(flag: str) -> int:
    """Killed (SIGKILL, by itself) on its first attempt; the pid of the engine it ran on after."""
    if not os.path.exists(flag):
        open(flag, "w").close()
        os.kill(os.getpid(), 9)
    return os.getpid()


def fail_and_log(log: str) -> None:
    """Always raises, after noting the pid of the engine it ran on."""
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    raise ValueError(f"failed on {os.getpid()}")


def simulate(steps: int, kill_at: int, grow_at: int = -1) -> Tuple[int, Dict[str, Any]]:
    """Publish the state at every step; on its first attempt die at `kill_at` (SIGKILL) or grow
    past any memory limit at `grow_at`.  Returns the step it started from and what it resumed."""
    from localpar.datapub import publish_data, resume_data

    resumed = resume_data()
    start = resumed.get("step", -1) + 1
    held: List[bytes] = []
    for step in range(start, steps):
        publish_data({"step": step, f"step{step}": os.getpid()})
        if not resumed and step == kill_at:
            os.kill(os.getpid(), 9)
        while not resumed and step == grow_at:  # killed by the memory watch while growing
            held.append(b"x" * (20 * MiB))
            time.sleep(0.005)
    return start, resumed


def test_a_task_whose_engine_is_killed_runs_again_on_the_other_engine(tmp_path: Any, leak_check: object) -> None:
    with Client(2) as c:
        pids = c.engine_pids()
        lv = c.load_balanced_view()
        with lv.temp_flags(retries=1):
            ar = lv.apply_async(die_first_time, str(tmp_path / "flag"))
        pid = ar.get(timeout=HANG_GUARD)
        assert len(c.ids) == 1, "one engine died"
        survivor = c.ids[0]
        assert (pid, ar.engine_id) == (pids[survivor], survivor)


def test_without_retries_the_death_is_the_result(tmp_path: Any) -> None:
    with Client(2) as c:
        ar = c.load_balanced_view().apply_async(die_first_time, str(tmp_path / "flag"))
        with pytest.raises(EngineError):
            ar.get(timeout=HANG_GUARD)


def test_with_restart_dead_the_retry_runs_on_the_replacement(tmp_path: Any, leak_check: object) -> None:
    with Client(1, restart_dead=True) as c:
        first = c.engine_pids()[0]
        lv = c.load_balanced_view()
        with lv.temp_flags(retries=1):
            ar = lv.apply_async(die_first_time, str(tmp_path / "flag"))
        pid = ar.get(timeout=HANG_GUARD)
        assert pid != first and c.engine_pids() == {0: pid}  # engine 0 again, in a new process
        assert ar.engine_id == 0


def test_one_engine_killed_without_restart_leaves_none_to_retry_on(tmp_path: Any) -> None:
    with Client(1) as c:
        lv = c.load_balanced_view()
        with lv.temp_flags(retries=1):
            ar = lv.apply_async(die_first_time, str(tmp_path / "flag"))
        with pytest.raises(Exception, match="no live engine"):
            ar.get(timeout=HANG_GUARD)


def test_each_retry_runs_on_an_engine_that_has_not_failed_it_and_the_last_error_is_raised(tmp_path: Any) -> None:
    log = tmp_path / "log"
    with Client(3) as c:
        lv = c.load_balanced_view()
        with lv.temp_flags(retries=2):
            ar = lv.apply_async(fail_and_log, str(log))
        with pytest.raises(RemoteError) as info:
            ar.get(timeout=HANG_GUARD)
        assert info.value.ename == "ValueError"
        ran_on = log.read_text().split()
        assert sorted(ran_on) == sorted(str(p) for p in c.engine_pids().values())  # three attempts, three engines
        assert f"failed on {ran_on[-1]}" in str(info.value)


def test_once_every_engine_failed_it_the_task_waits_and_its_timeout_ends_it(tmp_path: Any) -> None:
    """As ipyparallel: no engine is left that has not failed it, so it waits for a new one."""
    with Client(2) as c:
        lv = c.load_balanced_view()
        with lv.temp_flags(retries=2, timeout=0.2):
            ar = lv.apply_async(fail_and_log, str(tmp_path / "log"))
        with pytest.raises(TaskTimeout) as info:
            ar.get(timeout=HANG_GUARD)
        assert isinstance(info.value, (RemoteError, DependencyTimeout)) and info.value.ename == "TaskTimeout"
        assert len((tmp_path / "log").read_text().split()) == 2
        with lv.temp_flags(retries=2):  # without a timeout it waits until an engine is added
            ar = lv.apply_async(fail_and_log, str(tmp_path / "log2"))
            assert not ar.wait(1.0)
            c.add_engines(1)
            with pytest.raises(RemoteError):
                ar.get(timeout=HANG_GUARD)
        assert len((tmp_path / "log2").read_text().split()) == 3


def test_a_resumed_task_starts_after_the_last_step_it_published_before_its_engine_was_killed(
    leak_check: object,
) -> None:
    with Client(2) as c:
        lv = c.load_balanced_view()
        with lv.temp_flags(retries=1):
            ar = lv.apply_async(simulate, 10, 5)
        start, resumed = ar.get(timeout=HANG_GUARD)
        assert start == 6 and resumed["step"] == 5  # what the first attempt published, all of it
        assert sorted(k for k in resumed if k != "step") == [f"step{i}" for i in range(6)]
        assert ar.data["step"] == 9 and all(f"step{i}" in ar.data for i in range(10))  # every step
        first, second = {ar.data[f"step{i}"] for i in range(6)}, {ar.data[f"step{i}"] for i in range(6, 10)}
        assert len(first) == len(second) == 1 and first != second  # two engines, two attempts


def test_a_first_attempt_resumes_nothing() -> None:
    with Client(1) as c:
        lv = c.load_balanced_view()
        with lv.temp_flags(retries=1):
            assert lv.apply_sync(simulate, 3, -1) == (0, {})
        assert c[0].apply_sync(simulate, 3, -1) == (0, {})


def test_a_task_killed_over_the_memory_limit_resumes_on_the_replacement(leak_check: object) -> None:
    limit = psutil.Process().memory_info().rss + 150 * MiB  # forked engines start at this size
    with Client(1, memory_limit=limit) as c:
        first = c.engine_pids()[0]
        lv = c.load_balanced_view()
        with lv.temp_flags(retries=1):
            ar = lv.apply_async(simulate, 10, -1, 5)
        start, resumed = ar.get(timeout=HANG_GUARD)
        assert (start, resumed["step"]) == (6, 5)
        assert all(f"step{i}" in ar.data for i in range(10))
        assert c.engine_pids()[0] != first  # replaced after the kill


def test_a_task_after_a_retried_one_waits_for_its_last_attempt(tmp_path: Any) -> None:
    with Client(2) as c:
        lv = c.load_balanced_view()
        with lv.temp_flags(retries=1):
            flaky = lv.apply_async(die_first_time, str(tmp_path / "flag"))
        with lv.temp_flags(after=flaky):
            after = lv.apply_async(os.getpid)
        assert after.get(timeout=HANG_GUARD) == flaky.get(timeout=HANG_GUARD)  # the survivor ran both
        assert after.records[0].started >= flaky.records[0].completed


def test_a_retry_runs_on_the_replacement_that_took_its_engines_id_first() -> None:
    """The replacement of a dead engine may take its id in the ledger before the dead engine's
    task is retried; the retry must leave out the process that failed it, not the new one that
    holds the id now (it was left out, and the task waited for ever).  A race: ten rounds."""
    for _ in range(10):
        with Client(1, restart_dead=True) as c:
            first = c.engine_pids()[0]
            lv = c.load_balanced_view()
            with lv.temp_flags(retries=1):
                ar = lv.apply_async(simulate, 3, 1)
            start, resumed = ar.get(timeout=HANG_GUARD)
            assert (start, resumed["step"]) == (2, 1)
            assert c.engine_pids()[0] != first
