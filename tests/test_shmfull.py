"""A full /dev/shm: big buffers fall back to the pipes with a warning that names it, no SIGBUS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import localpar
from localpar import Client
from localpar.wire import sharedmem

MB = 1 << 20
LOCALPAR_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(localpar.__file__)))


def _no_room(fd, nbytes):
    import errno

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fill_shared_memory():
    """In the engine: from now on, no segment can be made (the test seam of sharedmem)."""
    from localpar.wire import sharedmem

    sharedmem.reserve = _no_room


def publish_around_a_big_one(n):
    from localpar.datapub import publish_data

    publish_data({"k": 1, "x": 1})  # through the queue: applied before the big one
    publish_data({"k": 2, "x": 2, "big": np.ones(n // 8), "list": list(range(2000))})  # through the event pipe
    publish_data({"k": 3})  # and the task's later ones too: applied after it
    return np.ones(n // 8)


def echo_sum(a):
    return float(a.sum())


def engine_segments(c):
    (pid,) = c.engine_pids().values()
    start = f"{sharedmem.prefix(c.cluster_id)}{pid}-"
    return [n for n in os.listdir(sharedmem._SHM_DIR) if n.startswith(start)]


def test_with_shared_memory_full_results_publications_and_arguments_go_through_the_pipes(monkeypatch):
    with Client(1) as c:
        v = c[0]
        v.apply_sync(fill_shared_memory)
        ar = v.apply_async(publish_around_a_big_one, 2 * MB)
        np.testing.assert_array_equal(ar.get(timeout=30), np.ones(2 * MB // 8))
        assert (
            (ar.data["k"], ar.data["x"]) == (3, 2)
            and ar.data["big"].shape == (2 * MB // 8,)
            and len(ar.data["list"]) == 2000
        )
        assert "is full" in ar.stderr and "free of" in ar.stderr and sharedmem._SHM_DIR in ar.stderr
        assert engine_segments(c) == []  # nothing went to shared memory
        monkeypatch.setattr(sharedmem, "reserve", _no_room)  # the client's side: arguments
        monkeypatch.setattr(sharedmem, "_warned_full", False)
        with pytest.warns(RuntimeWarning, match="is full"):
            assert v.apply_sync(echo_sum, np.ones(MB)) == MB


def _wait_for(path, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.path.exists(path)


def publish_behind_a_blocked_collector(folder):
    from localpar.datapub import publish_data

    assert _wait_for(os.path.join(folder, "watching"))  # the client's callback is in place
    publish_data({"x": 0})
    assert _wait_for(os.path.join(folder, "blocked"))  # the collector is in the callback
    publish_data({"x": 1})  # the queue
    publish_data({"x": 2, "list": list(range(2000))})  # too big for the queue: the event pipe, whole
    publish_data({"x": 3})  # after it: the event pipe too, or the drain before it would apply it first
    open(os.path.join(folder, "go"), "w").close()


def test_a_publication_sent_on_the_event_pipe_is_applied_in_order_with_the_queue_frames_around_it(tmp_path):
    """The collector reads event pipes before the queue: here both hold publications of the task,
    one from before and one from after the one on the event pipe."""
    with Client(1) as c:
        c[0].apply_sync(fill_shared_memory)
        ar = c[0].apply_async(publish_behind_a_blocked_collector, str(tmp_path))

        def hold_the_collector(data):  # runs in the collector thread
            if data.get("x") == 0:
                open(tmp_path / "blocked", "w").close()
                assert _wait_for(tmp_path / "go")

        ar.on_data(hold_the_collector)
        open(tmp_path / "watching", "w").close()
        ar.get(timeout=30)
        assert ar.data["x"] == 3 and len(ar.data["list"]) == 2000
        assert "is full" in ar.stderr  # it did take the event pipe


SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import numpy as np
    from localpar import Client

    def ret():
        return np.ones(10 * 2**20 // 8)

    def pub():
        from localpar.datapub import publish_data
        publish_data({"a": np.ones(10 * 2**20 // 8)})
        return 1

    def arg(a):
        return float(a.sum())

    out = {}
    with warnings.catch_warnings(record=True) as caught, Client(1) as c:
        warnings.simplefilter("always")
        v = c[0]
        out["ret"] = float(v.apply_sync(ret).sum())
        ar = v.apply_async(pub)
        ar.get(timeout=30)
        out["pub"] = float(ar.data["a"].sum())
        out["arg"] = v.apply_sync(arg, np.ones(10 * 2**20 // 8))
        out["client_warnings"] = [str(w.message) for w in caught]
    print(json.dumps(out))
    """
)


def _can_mount_a_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"], capture_output=True, timeout=10
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_a_tmpfs(), reason="no user+mount namespace here to mount a small /dev/shm")
def test_a_real_one_megabyte_dev_shm_gives_warnings_not_sigbus(tmp_path):
    script = tmp_path / "full.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "LOCALPAR_SHM_DIR"}
    env["PYTHONPATH"] = LOCALPAR_ROOT  # the localpar under test
    run = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "{sys.executable}" "{script}"',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    n = 10 * MB // 8
    assert (out["ret"], out["pub"], out["arg"]) == (n, n, n)
    assert any("/dev/shm is full" in w and "1.0 MiB" in w for w in out["client_warnings"]), out


def test_localpar_shm_dir_puts_every_segment_of_client_and_engines_there(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    script = textwrap.dedent(
        """
        import json, os, sys
        from localpar import Client
        from localpar.wire import sharedmem

        def big():
            return b"x" * 2**20

        with Client(1) as c:
            assert len(c[0].apply_sync(big)) == 2**20
            mine = sorted(n for n in os.listdir(sys.argv[1]) if n.startswith(sharedmem.prefix(c.cluster_id)))
            elsewhere = [n for n in os.listdir("/dev/shm") if n.startswith(sharedmem.prefix(c.cluster_id))]
            print(json.dumps({"mine": mine, "elsewhere": elsewhere}))
        """
    )
    env = {**os.environ, "LOCALPAR_SHM_DIR": str(shm), "PYTHONPATH": LOCALPAR_ROOT}
    run = subprocess.run([sys.executable, "-c", script, str(shm)], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["elsewhere"] == [] and len(out["mine"]) >= 2  # the spin page and the engine's pooled segment
    assert os.listdir(shm) == []  # and none left after close
