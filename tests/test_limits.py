"""Checks before a cluster starts: engine counts and file descriptors give clear errors and leave nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import psutil
import pytest

from localpar import Client, limits
from localpar.spin import usable_cpus

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
        from localpar.limits import descriptors_needed, open_descriptors

        def publish(i):
            publish_data({"a": np.ones(1 << 17) * i})  # 1 MB: through shared memory
            return i

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_descriptors() + descriptors_needed(4), hard))
        with Client(4) as c:
            deadline = time.monotonic() + 20
            while c.manager_pid is None and c.datastore_error is None and time.monotonic() < deadline:
                time.sleep(0.02)
            ar = c[:].apply_async(publish, 3)
            assert ar.get(timeout=30) == [3] * 4
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
