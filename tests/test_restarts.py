"""``restart_dead`` backs off and gives up (``localpar/client/restarts.py``): an engine that
keeps dying soon after its start is replaced later and later, then not at all, with a
warning, a line in ``c.status()`` and an EngineError that says so; ``close()`` ends a
back-off wait at once (issue 23: twenty replacements in 0.3 s, a fork storm)."""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import List, Optional

import pytest
from conftest import HANG_GUARD

from localpar import Client, EngineError
from localpar.client import restarts
from localpar.client.restarts import GIVE_UP_AFTER, QUICK_DEATH_SECONDS, RestartPolicy

pytestmark = pytest.mark.timeout(120)


def test_quick_deaths_back_off_then_give_up_and_a_long_life_starts_again() -> None:
    policy = RestartPolicy()
    plans = [policy.after_death(0, 0.1) for _ in range(GIVE_UP_AFTER)]
    delays = [p.delay for p in plans[:-1]]
    assert delays[0] == 0  # one crash: replaced at once
    assert all(b > a for a, b in zip(delays[1:], delays[2:])) and delays[1] > 0  # later and later
    assert all(p.given_up is None for p in plans[:-1])
    why = plans[-1].given_up
    assert why is not None and "engine 0" in why and "restart_engine(0)" in why
    assert policy.given_up() == [why]
    assert policy.after_death(1, 0.1).delay == 0  # per engine id
    policy.forget(0)
    assert policy.given_up() == []
    assert policy.after_death(0, 0.1) == restarts.Plan(0.0)
    assert policy.after_death(0, 0.1).delay > 0
    assert policy.after_death(0, QUICK_DEATH_SECONDS + 1).delay == 0  # a useful life: the count starts again
    assert policy.after_death(0, 0.1).delay == 0


def replacement(c: Client, engine_id: int, old_pid: Optional[int]) -> Optional[int]:
    """Wait (bounded) until engine `engine_id` runs in a new process; its pid, or None."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        pid = c.engine_pids().get(engine_id)
        if pid is not None and pid != old_pid:
            return pid
        time.sleep(0.02)
    return None


def after_death_threads(c: Client) -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"localpar-after-death-{c.cluster_id}-")]


def no_after_death_thread_left(c: Client) -> bool:
    deadline = time.monotonic() + HANG_GUARD
    while after_death_threads(c):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def kill_engine_zero(c: Client) -> EngineError:
    with pytest.raises(EngineError) as info:
        c[0].apply_async(os._exit, 1).get(timeout=HANG_GUARD)
    return info.value


def test_an_engine_that_keeps_dying_at_once_is_given_up_on(leak_check: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restarts, "BACKOFF_FIRST_SECONDS", 0.01)  # the back-off is tested below
    with Client(2, restart_dead=True) as c:
        pid: Optional[int] = c.engine_pids()[0]
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(GIVE_UP_AFTER - 1):
                error = kill_engine_zero(c)
                assert "not restarted" not in str(error)
                pid = replacement(c, 0, pid)
                assert pid is not None, "restart_dead did not replace engine 0"
            error = kill_engine_zero(c)
            assert no_after_death_thread_left(c)
        assert "engine 0 is not restarted" in str(error), str(error)
        assert "restart_engine(0)" in str(error)
        assert [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)] == [f"localpar: {error.reason}"]
        assert c.ids == [1]  # given up on; the other engine serves
        assert c[1].apply_sync(os.getpid) == c.engine_pids()[1]
        assert "engine 0 is not restarted" in str(c.status())
        assert "engine 0 is not restarted" in c.status()._repr_html_()
        c.restart_engine(0)  # by hand: it starts again, and is forgiven
        assert c.ids == [0, 1]
        assert c[0].apply_sync(os.getpid) == c.engine_pids()[0]
        assert "not restarted" not in str(c.status())


def test_close_ends_a_back_off_wait_at_once(leak_check: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restarts, "BACKOFF_FIRST_SECONDS", 3600.0)
    monkeypatch.setattr(restarts, "BACKOFF_MAX_SECONDS", 3600.0)
    c = Client(1, restart_dead=True)
    try:
        kill_engine_zero(c)  # the first quick death: replaced at once
        assert replacement(c, 0, None) is not None
        kill_engine_zero(c)  # the second: its replacement waits an hour
        deadline = time.monotonic() + HANG_GUARD
        while not after_death_threads(c) and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = after_death_threads(c)
        assert waiting, "no back-off wait"
        assert c.ids == []  # not replaced meanwhile
    finally:
        c.close()
    assert not [t for t in waiting if t.is_alive()], "close() left a back-off wait running"
