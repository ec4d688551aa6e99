"""Client: engines, ids, views by indexing, lifecycle."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from localpar import Client, ClientClosedError, CompositeError, DirectView, NoEnginesError


@pytest.fixture(scope="module")
def c():
    with Client(2) as client:
        yield client


def test_ids_and_len(c):
    assert c.ids == [0, 1]
    assert len(c) == 2


def test_default_engine_count_is_cpu_count():
    with Client() as client:
        assert len(client) == os.cpu_count()


@pytest.mark.parametrize(
    "n, expected",
    [
        (4, "<DirectView [0, 1, 2, 3]>"),
        (6, "<DirectView [0, 1, 2, 3,...]>"),
        (8, "<DirectView [0, 1, 2, 3,...]>"),
    ],
)
def test_directview_repr_follows_ipython(n, expected):
    with Client(n) as client:
        assert repr(client[:]) == expected


def test_indexing_gives_direct_views(c):
    assert repr(c[1]) == "<DirectView 1>"
    assert c[1].targets == 1
    assert c[[0, 1]].targets == [0, 1]
    assert c[0:1].targets == [0]
    assert isinstance(c[:], DirectView)
    with pytest.raises(IndexError):
        c[5]


def test_engines_are_child_processes(c):
    children = {p.pid for p in psutil.Process().children(recursive=True)}  # forkserver: grandchildren
    assert set(c.engine_pids().values()) <= children


def test_context_manager_and_idempotent_close():
    with Client(2) as client:
        pids = list(client.engine_pids().values())
        assert client[:].apply_sync(
            lambda: 1,
        ) == [1, 1]
    client.close()  # again: no error
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(ClientClosedError, match="closed"):
        client[:].apply_async(lambda: 1)


def test_a_closed_client_raises_client_closed_error_everywhere():
    client = Client(1)
    view = client[:]
    client.close()
    for call in (lambda: view.apply_async(abs, -1), lambda: client.add_engines(1), lambda: client.restart_engine(0)):
        with pytest.raises(ClientClosedError, match="this Client is closed"):
            call()
    with pytest.raises(RuntimeError):  # what callers caught before ClientClosedError was raised here
        client.clear()


@pytest.mark.parametrize("n, word", [(1, "1 engine,"), (2, "2 engines,")])
def test_client_repr_counts_engines_in_good_english(n, word):
    with Client(n) as client:
        assert word in repr(client), repr(client)
    assert "closed" in repr(client)


def test_help_explains_the_constructor_arguments():
    doc = Client.__doc__ or ""
    for word in ("start_method", "fork", "forkserver", "spawn", "datastore", "Manager"):
        assert word in doc, word


def test_targeting_a_missing_engine_is_a_clear_error(c):
    with pytest.raises(NoEnginesError, match="not alive"):
        c.direct_view([0, 7]).apply_async(lambda: 1)


def test_functions_from_main_script_run_on_engines(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            from localpar import Client
            OFFSET = 40

            def add(x):
                return x + OFFSET

            if __name__ == "__main__":
                with Client(2) as c:
                    print(c[:].apply_sync(add, 2), c[0].apply_sync(lambda: OFFSET + 1))
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[42, 42] 41"


def sleep_a_while(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_close_from_another_thread_fails_a_waiting_get_with_client_closed_error(leak_check):
    import threading

    c = Client(1)
    ar = c[0].apply_async(sleep_a_while, 30)
    closer = threading.Timer(0.3, c.close)
    closer.start()
    with pytest.raises(ClientClosedError, match="closed while task"):
        ar.get()  # no timeout: close() must wake it
    closer.join(timeout=30)


def test_close_fails_tasks_still_queued_for_an_engine_and_wakes_their_waiters(leak_check):
    """Load-balanced tasks that never reached an engine fail too, including one a thread waits on."""
    import threading

    c = Client(1)
    c.load_balance_depth = 1
    lb = c.load_balanced_view()
    running = lb.apply_async(sleep_a_while, 30)
    queued = [lb.apply_async(sleep_a_while, 30) for _ in range(3)]  # no engine has room for these
    assert all(r.engine_id == -1 for ar in queued for r in ar.records)
    outcome = []

    def wait() -> None:
        try:
            queued[-1].get()  # no timeout: close() must wake it
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = time.monotonic() + 10
    while c._ledger.waiters == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    c.close()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError), outcome
    for ar in [running, *queued]:
        with pytest.raises(ClientClosedError, match="closed while task"):
            ar.get(timeout=5)


def ignore_sigterm_and_sleep() -> None:
    import signal
    import time

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)


def test_engines_that_ignore_sigterm_are_killed_together_not_one_after_another(leak_check, monkeypatch):
    """close() terminates every busy engine, waits for all at once, then kills the rest:
    the grace periods do not add up (6 engines would take 6 x grace one after another)."""
    import time

    from localpar.client import resources as client_module

    monkeypatch.setattr(client_module, "ENGINE_EXIT_GRACE", 1.0)
    with Client(6) as c:
        ar = c[:].apply_async(ignore_sigterm_and_sleep)
        deadline = time.monotonic() + 10
        while sum(s["queue"] for i, s in c.queue_status().items() if isinstance(i, int)) < 6:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)  # the handlers are set
        pids = list(c.engine_pids().values())
        started = time.monotonic()
    took = time.monotonic() - started  # the with block's close()
    assert took < 3 * 1.0, f"close() took {took:.1f} s for 6 engines with a 1 s grace"
    assert all(psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in pids if psutil.pid_exists(p))
    with pytest.raises(CompositeError) as info:
        ar.get(timeout=1)
    assert {type(e) for e in info.value.errors} == {ClientClosedError}
