"""Dependencies of load-balanced tasks: ``after``, ``follow``, ``Dependency``, ``timeout``,
``@depend`` / ``@require``, and the errors of impossible and invalid ones."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterator

import pytest

import localpar
from localpar import (
    Client,
    Dependency,
    DependencyTimeout,
    ImpossibleDependency,
    InvalidDependency,
    RemoteError,
    TaskAborted,
    TaskTimeout,
    depend,
    require,
)

HANG_GUARD = 20.0


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with Client(2) as c:
        yield c


@pytest.fixture()
def lv(client: Client) -> Any:
    return client.load_balanced_view()


def wait_for_file(path: str) -> int:
    deadline = time.monotonic() + HANG_GUARD
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def append_after(log: str, i: int) -> str:
    """Append `i` to `log`, after a pause that lets a concurrent task show; returns what was there."""
    with open(log) as f:
        before = f.read()
    time.sleep(0.005)
    with open(log, "a") as f:
        f.write(f"{i} ")
    return before


def fail() -> None:
    raise ValueError("failed")


def test_a_chain_of_100_tasks_runs_one_after_the_other(lv: Any, tmp_path: Any) -> None:
    log = str(tmp_path / "log")
    open(log, "w").close()
    ars = [lv.apply_async(append_after, log, 0)]
    for i in range(1, 100):
        with lv.temp_flags(after=ars[-1]):
            ars.append(lv.apply_async(append_after, log, i))
    seen = [ar.get(timeout=HANG_GUARD) for ar in ars]
    assert seen == ["".join(f"{j} " for j in range(i)) for i in range(100)]  # each saw all before it
    assert {ar.engine_id for ar in ars} <= {0, 1}


def test_a_waiting_task_takes_no_thread_and_is_woken_by_its_dependency(client: Client, lv: Any, tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    first = lv.apply_async(wait_for_file, gate)
    threads = threading.active_count()
    with lv.temp_flags(after=first):
        waiting = [lv.apply_async(os.getpid) for _ in range(50)]
    assert threading.active_count() == threads
    assert set(ar.msg_ids[0] for ar in waiting) <= client.outstanding
    assert not any(ar.wait(0.2) for ar in waiting[:1]) and not any(ar.done() for ar in waiting)
    open(gate, "w").close()
    assert all(ar.get(timeout=HANG_GUARD) in client.engine_pids().values() for ar in waiting)


def fail_once_open(gate: str) -> None:
    wait_for_file(gate)
    raise ValueError("failed")


def test_a_task_after_a_failed_one_is_impossible_and_so_are_its_own_dependents(lv: Any, tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    failed = lv.apply_async(fail_once_open, gate)
    chain = []
    prev = failed
    for _ in range(500):  # failed in a loop, not by recursion
        with lv.temp_flags(after=prev):
            prev = lv.apply_async(os.getpid)
        chain.append(prev)
    assert not any(ar.done() for ar in chain)
    open(gate, "w").close()  # now they fail, each woken by the one before it
    for ar in chain:
        with pytest.raises(ImpossibleDependency) as info:
            ar.get(timeout=HANG_GUARD)
        assert isinstance(info.value, RemoteError) and info.value.ename == "ImpossibleDependency"
        assert info.value.engine_info == {}
    with lv.temp_flags(after=failed.msg_ids[0]):  # by msg_id, once finished
        with pytest.raises(ImpossibleDependency):
            lv.apply_sync(os.getpid)


def test_dependency_outcomes_all_success_failure(lv: Any) -> None:
    good, bad = lv.apply_async(os.getpid), lv.apply_async(fail)
    for ar in (good, bad):
        ar.wait(HANG_GUARD)
    runs = [Dependency([bad, good], all=False), Dependency([bad], success=False, failure=True),
            Dependency([bad, good], success=True, failure=True)]  # fmt: skip
    for dep in runs:
        with lv.temp_flags(after=dep):
            assert lv.apply_sync(lambda: "ran") == "ran", dep
    with lv.temp_flags(after=Dependency([good], success=False, failure=True)):
        with pytest.raises(ImpossibleDependency):
            lv.apply_sync(lambda: "ran")
    assert Dependency(Dependency([good]).as_dict()) == set(good.msg_ids)
    with pytest.raises(ValueError, match="at least one of successes or failures"):
        Dependency([good], success=False, failure=False)
    with pytest.raises(TypeError, match="invalid dependency type"):
        Dependency([123])


def test_follow_runs_where_the_dependency_ran(client: Client, lv: Any) -> None:
    for engine in client.ids:
        dep = client[engine].apply_async(os.getpid)
        with lv.temp_flags(follow=dep):
            pids = [ar.get(timeout=HANG_GUARD) for ar in [lv.apply_async(os.getpid) for _ in range(6)]]
        assert set(pids) == {dep.get()}


def test_follow_waits_for_a_dependency_still_running(client: Client, lv: Any, tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    dep = client[1].apply_async(wait_for_file, gate)
    with lv.temp_flags(follow=dep):
        ar = lv.apply_async(os.getpid)
    assert not ar.wait(0.2)
    open(gate, "w").close()
    assert ar.get(timeout=HANG_GUARD) == dep.get(timeout=HANG_GUARD)


def test_following_tasks_that_ran_on_two_engines_is_impossible(client: Client, lv: Any) -> None:
    a, b = client[0].apply_async(os.getpid), client[1].apply_async(os.getpid)
    with lv.temp_flags(follow=[a, b]):
        with pytest.raises(ImpossibleDependency):
            lv.apply_sync(os.getpid)
    with lv.temp_flags(follow=Dependency([a, b], all=False)):
        assert lv.apply_sync(os.getpid) in (a.get(), b.get())


@pytest.mark.parametrize("restart_dead", [False, True])
def test_following_a_dead_engine_is_impossible(restart_dead: bool) -> None:
    """Its namespace died with it: a replacement with the same id is not the same place."""
    with Client(2, restart_dead=restart_dead) as c:
        lv = c.load_balanced_view()
        dep = c[0].apply_async(os.getpid)
        old = dep.get(timeout=HANG_GUARD)
        c.send_signal("SIGKILL", 0)
        c.wait_for_death(0) if not restart_dead else _replaced(c, 0, old)
        with lv.temp_flags(follow=dep):
            with pytest.raises(ImpossibleDependency, match="engine.* is gone"):
                lv.apply_sync(os.getpid)


def _replaced(c: Client, engine_id: int, old: int) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while c.engine_pids().get(engine_id) in (None, old) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_an_unknown_msg_id_or_the_task_itself_is_an_invalid_dependency(lv: Any) -> None:
    with lv.temp_flags(after="12345"):
        with pytest.raises(InvalidDependency) as info:
            lv.apply_sync(os.getpid)
    assert info.value.ename == "InvalidDependency" and "12345" in str(info.value)
    with lv.temp_flags(follow=["no-such-task"]):
        with pytest.raises(InvalidDependency):
            lv.apply_sync(os.getpid)


def test_a_dependency_whose_async_result_is_gone_is_found_in_the_task_database(lv: Any) -> None:
    """As ipyparallel's Hub remembers every task: a msg_id whose AsyncResult was dropped is
    still a dependency, met or impossible as the task ended."""
    import gc

    good = lv.apply_async(os.getpid)
    good.get(timeout=HANG_GUARD)
    bad = lv.apply_async(fail)
    with pytest.raises(RemoteError):
        bad.get(timeout=HANG_GUARD)
    good_id, bad_id = good.msg_ids[0], bad.msg_ids[0]
    del good, bad
    gc.collect()
    with lv.temp_flags(after=[good_id]):
        assert isinstance(lv.apply_sync(os.getpid), int)
    with lv.temp_flags(after=[bad_id]):
        with pytest.raises(ImpossibleDependency):
            lv.apply_sync(os.getpid)


def test_a_dependency_not_met_in_time_fails_with_a_timeout(lv: Any, tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    slow = lv.apply_async(wait_for_file, gate)
    with lv.temp_flags(after=slow, timeout=0.2):
        ar = lv.apply_async(os.getpid)
    with pytest.raises(TaskTimeout) as info:
        ar.get(timeout=HANG_GUARD)
    assert isinstance(info.value, DependencyTimeout) and isinstance(info.value, ImpossibleDependency)
    assert info.value.ename == "TaskTimeout"
    open(gate, "w").close()
    slow.get(timeout=HANG_GUARD)
    with lv.temp_flags(timeout=0.05):  # the timeout bounds the wait, not the run
        assert lv.apply_sync(time.sleep, 0.3) is None


def test_waiting_tasks_can_be_aborted_and_cancelled(client: Client, lv: Any, tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    first = lv.apply_async(wait_for_file, gate)
    with lv.temp_flags(after=first):
        aborted, cancelled, kept = (lv.apply_async(os.getpid) for _ in range(3))
    aborted.abort()
    assert cancelled.cancel() and cancelled.cancelled()
    with pytest.raises(TaskAborted):
        aborted.get(timeout=HANG_GUARD)
    open(gate, "w").close()
    assert kept.get(timeout=HANG_GUARD) > 0
    assert client.queue_status()["unassigned"] == 0


def on_engine(engine_id: int) -> bool:
    from localpar.engine.namespace import engine_id as here

    return here() == engine_id


def test_depend_runs_only_where_its_check_holds(client: Client, lv: Any) -> None:
    @depend(on_engine, 1)
    def where() -> int:
        return os.getpid()

    assert {lv.apply_async(where).get(timeout=HANG_GUARD) for _ in range(6)} == {client.engine_pids()[1]}
    with pytest.raises(RemoteError) as info:
        client[0].apply_sync(where)
    assert info.value.ename == "UnmetDependency"
    assert client[1].apply_sync(where) == client.engine_pids()[1]
    with pytest.raises(ImpossibleDependency):  # no target of the view can run it
        client.load_balanced_view(targets=[0]).apply_sync(where)


def test_require_imports_modules_into_the_namespace_and_fails_without_them(client: Client, lv: Any) -> None:
    def helper() -> int:
        return 7

    @require("json", helper)
    @localpar.interactive
    def uses() -> Any:
        return json.dumps([helper()])  # type: ignore[name-defined]  # noqa: F821

    assert lv.apply_sync(uses) == "[7]"

    @require("no_such_module_xyz")
    def missing() -> None:
        pass

    with pytest.raises(RemoteError) as info:
        client[0].apply_sync(missing)
    assert (info.value.ename, info.value.evalue) == ("UnmetDependency", "no_such_module_xyz")
    with pytest.raises(ImpossibleDependency):
        client.load_balanced_view(targets=[0, 1]).apply_sync(missing)
    with pytest.raises(TypeError, match="passed by kwarg"):
        require(123)


def test_flags_are_checked_when_set(lv: Any) -> None:
    assert (lv.retries, lv.after, lv.follow, lv.timeout) == (0, None, None, 0.0)
    assert lv.set_flags(retries=1) is lv
    with pytest.raises(ValueError, match="Invalid dependency"):
        lv.set_flags(after=[123])
    with pytest.raises(TypeError, match="timeout"):
        lv.set_flags(timeout="x")
    with pytest.raises(ValueError, match="Invalid timeout"):
        lv.set_flags(timeout=-1)
    with pytest.raises(TypeError, match="retries"):
        lv.set_flags(retries=1.5)
    with pytest.raises(KeyError):
        lv.set_flags(bogus=1)


def test_closing_the_client_fails_the_waiting_tasks(tmp_path: Any, leak_check: object) -> None:
    from localpar import ClientClosedError

    gate = str(tmp_path / "gate")
    with Client(1) as c:
        lv = c.load_balanced_view()
        first = lv.apply_async(wait_for_file, gate)
        with lv.temp_flags(after=first, timeout=60):
            waiting = lv.apply_async(os.getpid)
        with lv.temp_flags(retries=1):  # fails on the one engine, then waits for another
            stalled = lv.apply_async(fail)
            assert not stalled.wait(0.3)
        assert {waiting.msg_ids[0], stalled.msg_ids[0]} <= c.outstanding
    for ar in (waiting, stalled):
        with pytest.raises(ClientClosedError):
            ar.get(timeout=HANG_GUARD)
