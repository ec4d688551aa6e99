"""Checks before a cluster starts: engine counts and file descriptors give clear errors and leave nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import psutil
import pytest

from localpar import Client
from localpar.processes import limits
from localpar.processes.spin import usable_cpus

pytestmark = pytest.mark.timeout(120)


def children() -> set:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.parametrize("n", ["2", 2.0, True, [2]])
def test_an_engine_count_that_is_no_int_is_a_type_error_naming_n(n):
    before = children()
    with pytest.raises(TypeError, match=r"^n must be an int \(the number of engines\), got "):
        Client(n)
    assert children() == before


def test_a_numpy_integer_is_an_engine_count():
    with Client(np.int64(1)) as c:
        assert c.ids == [0]


@pytest.mark.parametrize("n", [0, -3])
def test_fewer_than_one_engine_is_a_value_error(n):
    with pytest.raises(ValueError, match=f"at least one engine, got n={n}"):
        Client(n)


def test_far_more_engines_than_cpus_is_refused_before_anything_starts(leak_check):
    bound = limits.MAX_ENGINES_PER_CPU * usable_cpus()
    for n in (1000, bound + 1):
        with pytest.raises(ValueError, match=f"{n} engines on {usable_cpus()} usable CPUs .*oversubscribe=True"):
            Client(n)


def test_oversubscribe_allows_more_engines(monkeypatch, leak_check):
    monkeypatch.setattr(limits, "MAX_ENGINES_PER_CPU", 1)  # a bound small enough to pass cheaply
    n = usable_cpus() + 1
    with pytest.raises(ValueError, match="oversubscribe"):
        Client(n)
    with Client(1) as c:
        with pytest.raises(ValueError, match="oversubscribe"):
            c.add_engines(n)
        with pytest.raises(TypeError, match="^n must be an int"):
            c.add_engines("1")
        assert c.ids == [0]
    with Client(n, oversubscribe=True) as c:
        assert len(c.ids) == n
        assert c.add_engines(1) == [n]


LOW_LIMIT = """
import glob, os, resource, sys
import psutil
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, hard))
from localpar import Client

out = {}
try:
    Client({engines})
except OSError as exc:
    out["error"] = str(exc)
    out["errno"] = exc.errno
out["children"] = len(psutil.Process().children(recursive=True))
out["segments"] = glob.glob(f"/dev/shm/localpar-*-{os.getpid()}-*")
out["fds"] = len(os.listdir("/proc/self/fd"))
print(json.dumps(out))
"""


def run_with_fd_limit(limit: int, engines: int) -> dict:
    code = "import json\n" + LOW_LIMIT.replace("{limit}", str(limit)).replace("{engines}", str(engines))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[0])


def test_too_low_a_descriptor_limit_is_a_clear_error_that_leaves_nothing():
    out = run_with_fd_limit(64, 10)
    assert out["errno"] == 24  # EMFILE, as the bare error was: `except OSError` still catches it
    message = out["error"]
    assert "file descriptors" in message and "may open 64 (ulimit -n" in message, message
    assert f"{limits.FDS_PER_ENGINE} per engine" in message and "engines fit" in message, message
    assert out["children"] == 0 and out["segments"] == []


def test_the_descriptor_counts_are_enough_for_a_working_cluster():
    """With exactly the limit the check asks for, a cluster starts, publishes and computes."""
    code = textwrap.dedent(
        """
        import resource, time
        import numpy as np
        from localpar import Client
        from localpar.datapub import publish_data
        from localpar.processes.limits import descriptors_needed, open_descriptors

        def publish(i):
            publish_data({"a": np.ones(1 << 17) * i})  # 1 MB: through shared memory
            return i

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_descriptors() + descriptors_needed(4), hard))
        with Client(4) as c:
            ar = c[:].apply_async(publish, 3)  # the first publication starts the Manager
            assert ar.get(timeout=30) == [3] * 4
            deadline = time.monotonic() + 20
            while c.manager_pid is None and c.datastore_error is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert [float(d["a"][0]) for d in ar.data] == [3.0] * 4
            del ar
            assert c.datastore_error is None, c.datastore_error
            assert c[:].apply_sync(sum, [1, 2]) == [3] * 4
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_add_engines_checks_the_descriptor_limit_first(leak_check):
    with Client(1) as c:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_descriptors() + 8, hard))
            with pytest.raises(OSError, match=r"starting 3 engines needs about .* file descriptors"):
                c.add_engines(3)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert c.ids == [0]
        assert c[0].apply_sync(os.getpid) == c.engine_pids()[0]


# -- threads and processes (ulimit -u) ---------------------------------------------------------
# RLIMIT_NPROC counts every thread of the user's processes, and root is exempt: as root, the
# child runs with another real uid (and without the capabilities that exempt it), so that
# it alone counts against the limit. The child sets the limit itself: this runner is unaffected.
NPROC_SCRIPT = """
import json, os, resource, sys, threading, time
import psutil
from localpar import Client
from localpar.datapub import publish_data

def user_tasks():  # what RLIMIT_NPROC counts: every thread of this user's processes
    count = 0
    for p in psutil.process_iter():
        try:
            if p.uids().real == os.getuid():
                count += p.num_threads()
        except psutil.Error:
            pass
    return count

limit = user_tasks() + 40
resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
me = psutil.Process()
out = {"limit": limit, "attempts": []}
try:
    Client(12).close()
except OSError as exc:
    out["precheck"] = str(exc)
out["precheck_children"] = len(me.children(recursive=True))  # before any cluster: no helper either

def ours():
    # Child processes still running, but multiprocessing's forkserver and resource tracker:
    # they serve the whole process, not one cluster.
    found = []
    for p in me.children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and not any("multiprocessing" in a for a in p.cmdline()):
                found.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return found

stop = threading.Event()
for free in range(12):  # each step leaves the cluster a few more threads and processes
    held = []
    while user_tasks() < limit - free:
        t = threading.Thread(target=stop.wait)
        t.start()
        held.append(t)
    attempt = {"free": free}
    try:
        with Client(2) as c:
            try:
                c[:].apply_async(publish_data, {"first": "publication"}).get(timeout=20)  # starts the Manager
            except Exception as exc:
                attempt["task_error"] = str(exc)
            deadline = time.monotonic() + 10
            while c.manager_pid is None and c.datastore_error is None and time.monotonic() < deadline:
                time.sleep(0.01)
            attempt["datastore_error"] = c.datastore_error
    except Exception as exc:
        attempt["error"] = f"{type(exc).__name__}: {exc}"
    stop.set()
    for t in held:
        t.join()
    stop.clear()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ours():
        time.sleep(0.02)
    attempt["children"] = ours()
    attempt["threads"] = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    mine = f"-{os.getpid()}-"  # localpar-<cluster>-<pid>-<n>: the client's spin page, for one
    attempt["segments"] = [n for n in os.listdir("/dev/shm") if n.startswith("localpar-") and mine in n]
    out["attempts"].append(attempt)
    if "error" not in attempt and "task_error" not in attempt and attempt["datastore_error"] is None:
        break  # a cluster that fits: larger steps would fit too
print(json.dumps(out), flush=True)
"""


def nproc_command() -> list:
    if os.geteuid() != 0:
        return [sys.executable]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("as root, RLIMIT_NPROC applies only under another uid: needs setpriv")
    uid = next(u for u in range(54321, 64000) if not any(p.uids().real == u for p in psutil.process_iter()))
    return [setpriv, f"--ruid={uid}", "--bounding-set=-sys_resource,-sys_admin", sys.executable]


def test_reaching_the_thread_and_process_limit_is_a_clear_error_that_leaves_nothing(tmp_path) -> None:
    script = tmp_path / "nproc.py"
    script.write_text(NPROC_SCRIPT)
    done = subprocess.run(
        [*nproc_command(), str(script)], capture_output=True, text=True, timeout=120, cwd=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    limit = out["limit"]
    named = "ulimit -u, RLIMIT_NPROC"
    failures = 0
    for attempt in out["attempts"]:
        for key in ("error", "task_error", "datastore_error"):
            if attempt.get(key):
                failures += 1
                # Named, with its value (the Manager's reason is never empty).
                assert f"{named} = {limit}" in attempt[key], attempt
        if attempt.get("error"):
            assert attempt["error"].startswith("BlockingIOError: [Errno 11] could not start "), attempt
        assert attempt["children"] == [], attempt  # no engine, Manager or forkserver left running
        assert attempt["threads"] == [], attempt
        assert attempt["segments"] == [], attempt  # no spin page left in /dev/shm
    assert failures, f"no start hit the limit: {out}"
    assert "cannot join thread" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    # A cluster that could not fit even alone is refused before anything starts.
    assert named in out.get("precheck", "") and "12 engines" in out["precheck"], out
    assert out["precheck_children"] == 0


def test_far_more_engines_than_cpus_warns_naming_both(monkeypatch, leak_check) -> None:
    monkeypatch.setattr(limits, "usable_cpus", lambda: 1)
    with pytest.warns(UserWarning, match=r"^5 engines on 1 usable CPU: more than 4 per CPU"):
        c = Client(5)
    with c:
        assert len(c) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Client(4) as c:  # four per CPU: no warning
            with pytest.warns(UserWarning, match=r"^5 engines on 1 usable CPU"):
                c.add_engines(1)


def test_no_thread_for_an_engines_death_neither_stops_the_client_nor_its_close(monkeypatch) -> None:
    """At the thread limit, the work after an engine's death runs where it was noticed instead."""
    import signal
    import threading

    from localpar import EngineError

    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name.startswith("localpar-after-death-"):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)  # the test's stand-in for ulimit -u
    with Client(2) as c:
        doomed = c[0].apply_async(__import__("time").sleep, 60)
        os.kill(c.engine_pids()[0], signal.SIGKILL)
        with pytest.raises(EngineError):
            doomed.get(timeout=30)
        assert c[1].apply_sync(abs, -5) == 5  # the collector is still serving
        assert c.wait_for_death(0, timeout=10)
    # leaving the block closed it without "cannot join thread before it is started"
