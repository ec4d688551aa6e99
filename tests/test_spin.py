"""The bounded spin before blocking: quick to see a message, idle at rest."""

from __future__ import annotations

import os
import select
import time

import psutil
import pytest

from localpar.processes import spin
from localpar.processes.spin import spin_until_ready


def _pipe_poller():
    r, w = os.pipe()
    poller = select.poll()
    poller.register(r, select.POLLIN)
    return r, w, poller


def test_spin_reports_a_ready_pipe_and_gives_up_on_an_empty_one():
    r, w, poller = _pipe_poller()
    try:
        assert spin_until_ready(poller, 0.001) is False
        os.write(w, b"x")
        assert spin_until_ready(poller, 0.001) is True
        assert spin_until_ready(poller, 0.0) is True  # no spin: one look
    finally:
        os.close(r)
        os.close(w)


def test_a_caller_spin_lets_another_thread_make_its_condition_true():
    """get() spins on its Future's state while the collector thread completes it: the spin
    yields the GIL, so the other thread runs at once, not after the 5 ms switch interval."""
    import threading

    done = threading.Event()
    steps = []

    def complete() -> None:
        for i in range(200):  # Python work that needs the GIL between each step
            steps.append(i)
        done.set()

    worker = threading.Thread(target=complete)
    worker.start()
    assert spin.spin_until(done.is_set, 5.0) is True
    worker.join(timeout=5)
    assert len(steps) == 200
    assert spin.spin_until(lambda: False, 0.0005) is False  # bounded when nothing comes


def test_spin_is_bounded_and_short():
    assert 0 <= spin.SPIN_SECONDS <= 0.001


def _cpu_seconds(pids):
    return sum(sum(psutil.Process(p).cpu_times()[:2]) for p in pids)


def _noop():
    return None


def test_an_idle_cluster_does_not_spin(client):
    """After a burst of calls the engines and the client block: no CPU is burnt at rest."""
    for _ in range(200):
        client[0].apply_sync(_noop)
    client[:].apply_sync(_noop)
    engines = list(client.engine_pids().values())
    me = psutil.Process()
    time.sleep(0.1)
    before_engines, before_client = _cpu_seconds(engines), sum(me.cpu_times()[:2])
    time.sleep(1.0)
    used_engines = _cpu_seconds(engines) - before_engines
    used_client = sum(me.cpu_times()[:2]) - before_client
    assert used_engines < 0.05, f"idle engines used {used_engines:.3f} s of CPU in 1 s"
    assert used_client < 0.05, f"the idle client used {used_client:.3f} s of CPU in 1 s"


def test_spin_hint_is_hot_while_a_caller_waits_and_cools_after():
    import stat

    from localpar.processes.spin import SpinHint
    from localpar.wire import sharedmem

    hint = SpinHint.create("spintest")
    engine_side = SpinHint(hint.name)
    try:
        assert stat.S_IMODE(os.stat(sharedmem.path(hint.name)).st_mode) == 0o600
        assert not engine_side.hot()
        hint.waiting()
        time.sleep(0.01)
        assert engine_side.hot()  # however long the wait
        hint.done_waiting()
        time.sleep(0.01)
        assert not engine_side.hot()
    finally:
        engine_side.close()
        hint.close()
        sharedmem.sweep("spintest")
    assert not os.path.exists(sharedmem.path(hint.name))


def test_no_more_engines_spin_at_once_than_cpus_to_spare(monkeypatch):
    from localpar.processes import spin
    from localpar.processes.spin import SpinHint
    from localpar.wire import sharedmem

    monkeypatch.setattr(spin, "MAX_SPINNERS", 1)
    monkeypatch.setattr(spin, "SPIN_SECONDS", 0.002)
    hint = SpinHint.create("spintest2")
    r, w, poller = _pipe_poller()
    try:
        hint.waiting()
        assert hint.spin(poller, 0) is False  # nothing came: it spun, and gave up
        hint._page[8 + 1] = 1  # engine 1 is spinning now
        os.write(w, b"x")  # something is ready, but no CPU is to spare: no spin at all
        assert hint.spin(poller, 0) is False
        hint.forget(1)  # engine 1 died while spinning
        assert hint.spin(poller, 0) is True
        hint.done_waiting()
        time.sleep(0.01)
        assert hint.spin(poller, 0) is False  # cold: nobody waits for results
    finally:
        os.close(r)
        os.close(w)
        hint.close()
        sharedmem.sweep("spintest2")


def _run_with_spin_env(value, code):
    import subprocess
    import sys

    env = dict(os.environ, LOCALPAR_SPIN_US=value)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_spinning_can_be_turned_off_and_the_cluster_still_works():
    code = (
        "from localpar import Client\n"
        "from localpar.processes import spin\n"
        "assert spin.SPIN_SECONDS == 0, spin.SPIN_SECONDS\n"
        "with Client(2) as c:\n"
        "    assert [c[0].apply_sync(abs, -i) for i in range(50)] == list(range(50))\n"
        "print('ok')\n"
    )
    done = _run_with_spin_env("0", code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


SHOW_SPIN = (
    "import localpar, localpar.processes.spin as s; print(repr(s.SPIN_SECONDS), repr(s._default_spin_seconds()))"
)


@pytest.mark.parametrize("value", ["fast", "abc", "", "0x10", "nan", "1 ms"])
def test_a_bad_spin_setting_warns_and_falls_back_to_the_default(value):
    done = _run_with_spin_env(value, SHOW_SPIN)
    assert done.returncode == 0, done.stderr  # `import localpar` must not fail over it
    used, default = done.stdout.split()
    assert used == default
    assert f"LOCALPAR_SPIN_US must be a number of microseconds, got {value!r}" in done.stderr
    assert "RuntimeWarning" in done.stderr and "default" in done.stderr


@pytest.mark.parametrize("value", ["inf", "1e12", "10001"])
def test_a_huge_spin_setting_is_capped_at_10_ms(value):
    done = _run_with_spin_env(value, SHOW_SPIN)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[0]) == 0.01
    assert "capped at 10000 µs (10 ms)" in done.stderr


@pytest.mark.parametrize("value, seconds", [("5000", 0.005), ("10000", 0.01), (" 250 ", 0.00025), ("-3", 0.0)])
def test_a_sane_spin_setting_is_used_silently(value, seconds):
    done = _run_with_spin_env(value, SHOW_SPIN)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert float(done.stdout.split()[0]) == pytest.approx(seconds)


@pytest.fixture
def loadavg(tmp_path, monkeypatch):
    """Point the contention check at a file of ours: ``write(n)`` says n tasks are runnable."""
    path = tmp_path / "loadavg"
    monkeypatch.setattr(spin, "_LOADAVG", str(path))

    def write(running: int) -> None:
        path.write_text(f"0.10 0.20 0.30 {running}/300 4242\n")
        spin._contention["checked"] = -float("inf")  # read it again now

    yield write
    spin._contention["checked"] = -float("inf")


def test_spinning_stops_while_the_machine_has_no_cpu_to_spare(loadavg, tmp_path):
    cpus = os.cpu_count() or 1
    loadavg(1)
    assert spin.cpu_to_spare()
    loadavg(cpus + 1)  # a busy process besides this one
    assert not spin.cpu_to_spare()
    os.remove(tmp_path / "loadavg")
    spin._contention["checked"] = -float("inf")
    assert spin.cpu_to_spare()  # unreadable: spin as before


def test_a_caller_waiting_on_a_busy_machine_lets_the_engines_block(loadavg):
    from localpar import Client
    from localpar.processes.spin import SpinHint

    with Client(1) as c:
        engine_side = SpinHint(c._spin_hint.name)
        try:
            for running, hot in ((os.cpu_count() or 1) + 1, False), (1, True):
                loadavg(running)
                with c._ledger.waiting():  # what a caller in get() does around its wait
                    assert engine_side.hot() is hot
                assert c[0].apply_sync(abs, -3) == 3
        finally:
            engine_side.close()


def test_a_wait_ending_after_its_cluster_closed_does_not_fail_on_the_spin_page():
    from localpar.processes.spin import SpinHint
    from localpar.wire import sharedmem

    hint = SpinHint.create("spinclosed")
    try:
        hint.waiting()
        hint.close()  # the cluster closed while a caller waited
        hint.done_waiting()  # that caller's wait ends: nothing to tell engines any more
        hint.waiting()
    finally:
        sharedmem.sweep("spinclosed")


def test_an_engine_that_dies_spinning_is_forgotten():
    """A dead engine's spin byte would otherwise count against MAX_SPINNERS for good."""
    import signal

    from localpar import Client
    from localpar.processes.spin import SpinHint

    with Client(2) as c:
        engine_side = SpinHint(c._spin_hint.name)
        try:
            engine_side._page[8 + 0] = 1  # engine 0 is spinning when it dies
            assert c._spin_hint.spinning(0)
            os.kill(c.engine_pids()[0], signal.SIGKILL)
            assert c.wait_for_death(0, timeout=30)
            assert not c._spin_hint.spinning(0)
            assert c[1].apply_sync(abs, -3) == 3
        finally:
            engine_side.close()
