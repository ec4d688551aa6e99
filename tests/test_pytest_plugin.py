"""The pytest plugin, run on generated test suites through ``pytester`` (in subprocesses)."""

from __future__ import annotations

import json
from typing import List, Tuple

import psutil
import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

INNER = ("-p", "no:cacheprovider", "-p", "no:randomly")
"""Options of every inner run. The generated suites check what one test leaves to the next,
so they must run in file order: an installed pytest-randomly would shuffle them (the inner
run loads the same plugins as this one); ``-p no:randomly`` is harmless without it."""

SUITE = '''
import os
import signal
import time

SEEN = {}


def test_session_client(localpar_client):
    SEEN["client"] = localpar_client
    assert localpar_client.ids == [0, 1]


def test_same_client_all_session(localpar_client):
    assert localpar_client is SEEN["client"]


def test_view_is_fresh_and_non_blocking(localpar_client, localpar_view):
    assert localpar_view.block is False
    ar = localpar_view.apply(os.getpid)
    assert sorted(ar.get(timeout=30)) == sorted(localpar_client.engine_pids().values())


def started(ar):
    """Wait until the task has published that it runs (so it can no longer be aborted)."""
    def published():
        data = ar.data
        return all(data) if isinstance(data, list) else bool(data)

    deadline = time.monotonic() + 20
    while not published() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert published()
    return ar


def sleeper(seconds):
    from localpar.datapub import publish_data

    publish_data({"running": True})
    time.sleep(seconds)


def test_leaves_running_and_queued_work(localpar_view):
    SEEN["running"] = started(localpar_view.apply_async(sleeper, 60))
    SEEN["queued"] = localpar_view.apply_async(sleeper, 60)


def test_running_work_was_interrupted_and_queued_work_aborted(localpar_client, localpar_view):
    assert not localpar_client.outstanding
    assert [e.ename for e in SEEN["running"].exception(timeout=0).errors] == ["KeyboardInterrupt"] * 2
    assert [e.ename for e in SEEN["queued"].exception(timeout=0).errors] == ["TaskAborted"] * 2
    assert localpar_view.apply(lambda: 1).get(timeout=10) == [1, 1]


def stubborn():
    from localpar.datapub import publish_data

    publish_data({"running": True})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass


def test_leaves_work_that_ignores_interrupts(localpar_client, localpar_view):
    SEEN["pid1"] = localpar_client.engine_pids()[1]
    SEEN["stubborn"] = started(localpar_client[1].apply_async(stubborn))


def test_stuck_engine_was_replaced(localpar_client):
    assert localpar_client.ids == [0, 1]
    assert localpar_client.engine_pids()[1] != SEEN["pid1"]
    assert not localpar_client.outstanding
    assert SEEN["stubborn"].exception(timeout=0).ename == "EngineError"


def test_kills_an_engine(localpar_client, localpar_view):
    SEEN["pid0"] = localpar_client.engine_pids()[0]
    os.kill(SEEN["pid0"], signal.SIGKILL)
    assert localpar_client.wait_for_death(0, timeout=10)


def test_dead_engine_was_replaced(localpar_client, localpar_view):
    assert localpar_client.ids == [0, 1]
    assert localpar_client.engine_pids()[0] != SEEN["pid0"]
    assert localpar_view.apply(lambda: 2).get(timeout=10) == [2, 2]


def test_cluster_factory(localpar_cluster, localpar_client):
    a = localpar_cluster()
    b = localpar_cluster(1, datastore=False)
    assert (a.ids, b.ids) == ([0, 1], [0])
    assert len({a.cluster_id, b.cluster_id, localpar_client.cluster_id}) == 3
    assert b[0].apply_sync(lambda x: x + 1, 41) == 42
    b.close()  # closing one yourself is fine too
'''

COUNT = """
def test_count(localpar_client):
    assert len(localpar_client.ids) == int(__import__("os").environ["EXPECTED"])
"""

FAILING = """
import json
import os
import time
from pathlib import Path

import psutil
import pytest

PIDS = Path(__file__).parent / "pids.jsonl"


def record(client):
    from localpar.datapub import publish_data

    client[client.ids[0]].apply_sync(publish_data, {"first": "publication"})  # which starts the Manager
    deadline = time.monotonic() + 20
    while client.manager_pid is None and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = list(client.engine_pids().values()) + [client.manager_pid]
    with PIDS.open("a") as f:
        for pid in pids:
            f.write(json.dumps([pid, psutil.Process(pid).create_time()]) + "\\n")


def test_fails_with_work_running(localpar_client, localpar_view):
    record(localpar_client)
    localpar_view.apply_async(time.sleep, 60)
    assert False, "deliberate"


def test_raises_in_a_factory_cluster(localpar_cluster):
    record(localpar_cluster())
    c = localpar_cluster(1)
    record(c)
    c[0].apply_async(time.sleep, 60)
    raise RuntimeError("deliberate")


@pytest.fixture
def broken():
    yield
    raise RuntimeError("deliberate teardown error")


def test_teardown_error(localpar_cluster, broken):
    record(localpar_cluster())
"""

CONFTEST = """
import json
import time
from pathlib import Path

import psutil

HERE = Path(__file__).parent


def alive(pids):
    survivors = []
    for pid, created in pids:
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                survivors.append(pid)
        except psutil.NoSuchProcess:
            pass
    return survivors


def pytest_unconfigure(config):
    # After the fixtures' teardown, before interpreter exit and localpar's atexit safety net.
    pids = [json.loads(line) for line in (HERE / "pids.jsonl").read_text().splitlines()]
    deadline = time.monotonic() + 5
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    (HERE / "alive_after_session.json").write_text(json.dumps(alive(pids)))
"""


def alive(pids: List[Tuple[int, float]]) -> List[int]:
    """Those of the recorded processes that still run (same pid and same start time)."""
    survivors = []
    for pid, created in pids:
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                survivors.append(pid)
        except psutil.NoSuchProcess:
            pass
    return survivors


def test_fixtures_in_a_generated_suite(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlocalpar_settle_timeout = 0.5\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(*INNER, "-v", timeout=110)
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(["localpar: 2 engines for localpar_client"])


LEFT_RUNNING = """
import time

SEEN = {}


def publish_then_sleep():
    from localpar.datapub import publish_data

    publish_data({"running": True})
    time.sleep(60)


def test_leaves_a_task_running(localpar_view):
    ar = localpar_view.apply_async(publish_then_sleep)
    deadline = time.monotonic() + 20
    while not all(ar.data) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(ar.data)
    SEEN["ar"] = ar
    SEEN["left"] = time.monotonic()


def test_the_next_test_starts_soon(localpar_client):
    waited = time.monotonic() - SEEN["left"]
    assert waited < 4, waited
    assert [e.ename for e in SEEN["ar"].exception(timeout=0).errors] == ["KeyboardInterrupt"] * 2
"""


def test_a_task_left_running_is_interrupted_within_the_default_settle_timeout(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_left=LEFT_RUNNING)  # no ini: the default localpar_settle_timeout
    result = pytester.runpytest_subprocess(*INNER, "-v", timeout=110)
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(
    "ini, args, expected",
    [("localpar_engines = 1", [], 1), ("localpar_engines = 1", ["--localpar-engines", "3"], 3)],
)
def test_engine_count_from_ini_and_command_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ini: str, args: List[str], expected: int
) -> None:
    monkeypatch.setenv("EXPECTED", str(expected))
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_count=COUNT)
    result = pytester.runpytest_subprocess(*INNER, *args, timeout=110)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("args", [["--localpar-engines", "0"], ["-o", "localpar_engines=many"]])
def test_bad_engine_count_is_a_usage_error(pytester: pytest.Pytester, args: List[str]) -> None:
    pytester.makepyfile(test_count=COUNT)
    result = pytester.runpytest_subprocess(*INNER, *args, timeout=110)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*localpar*engine*"])


def test_failing_tests_leave_no_processes(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlocalpar_settle_timeout = 0.5\n")
    pytester.makepyfile(test_failing=FAILING)
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest_subprocess(*INNER, timeout=110)
    result.assert_outcomes(failed=2, passed=1, errors=1)
    lines = (pytester.path / "pids.jsonl").read_text().splitlines()
    pids = [tuple(json.loads(line)) for line in lines]
    assert len(pids) == 3 + 3 + 2 + 3  # session, two factory clusters, one more: engines + Manager each
    assert json.loads((pytester.path / "alive_after_session.json").read_text()) == []  # closed by the fixtures
    assert alive(pids) == []
