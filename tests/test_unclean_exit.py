"""A client process that ends without its exit hooks (SIGTERM, SIGKILL, a notebook kernel shut
down by Jupyter) leaves no shared memory: its engines see it go and remove the cluster's.

Its pipes close in the kernel one by one as it exits; an engine may see its task pipe end before
its lifeline does, and must then still clean up as on the client's death (issue 23: a kernel
shut down with a Client open left its spin page in 4 of 6 runs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List

import pytest
from conftest import HANG_GUARD, shm_segments, wait_pids_gone

pytestmark = pytest.mark.timeout(120)

ROOT = str(Path(__file__).resolve().parent.parent)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}  # this tree's localpar

TASKS_FIRST = """
import os, signal, sys, time
from localpar import Client

c = Client(1, start_method=sys.argv[2])  # not fork: the engine holds no copy of the task pipe
pids = list(c[:].apply_sync(os.getpid))  # started and ready
print("CLUSTER", c.cluster_id, *pids, flush=True)
os.close(c._ledger.engines[0].tasks.fd)  # the task pipe ends first, the lifeline a while later
time.sleep(float(sys.argv[1]))
os.kill(os.getpid(), signal.SIGKILL)  # no exit hook runs
"""


def wait_gone(names: List[str], timeout: float = HANG_GUARD) -> List[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = [n for n in names if os.path.exists(f"/dev/shm/{n}")]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_an_engine_whose_task_pipe_ends_first_still_cleans_up_after_its_client(tmp_path: Path, method: str) -> None:
    script = tmp_path / "tasks_first.py"
    script.write_text(textwrap.dedent(TASKS_FIRST))
    done = subprocess.run(
        [sys.executable, str(script), "1.0", method],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
        env=ENV,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    _, cluster, *pids = done.stdout.split()
    survivors = wait_pids_gone([int(p) for p in pids])
    try:
        assert not survivors, f"engines still running after their client died: {survivors}"
        left = wait_gone(sorted(shm_segments(cluster)))
        assert not left, f"left in /dev/shm by a client that died: {left}"
    finally:
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)


KERNEL_CODE = "import os, localpar\nc = localpar.Client(2)\nprint(c.cluster_id, *c[:].apply_sync(os.getpid))"


@pytest.mark.slow
def test_a_notebook_kernel_shut_down_with_a_client_open_leaves_nothing() -> None:
    """The way Jupyter ends a kernel: interrupt, shutdown request, SIGTERM after a wait, SIGKILL.
    (ipykernel TERMs the children in its process group: multiprocessing's forkserver, whose
    zombie keeps it waiting until Jupyter's SIGTERM, which runs no exit hook.)"""
    manager = pytest.importorskip("jupyter_client.manager")
    pytest.importorskip("ipykernel")
    for _ in range(2):
        km, kc = manager.start_new_kernel(kernel_name="python3", cwd=ROOT, env=ENV)
        texts: List[str] = []
        try:
            kc.execute_interactive(
                KERNEL_CODE,
                timeout=60,
                output_hook=lambda m, texts=texts: texts.append(m["content"].get("text", "")),
            )
        finally:
            kc.stop_channels()
            km.shutdown_kernel()
        cluster, *pids = "".join(texts).split()
        survivors = wait_pids_gone([int(p) for p in pids])
        try:
            assert not survivors, f"engines still running after their kernel ended: {survivors}"
            left = wait_gone(sorted(shm_segments(cluster)))
            assert not left, f"left in /dev/shm by a kernel that ended: {left}"
        finally:
            for pid in survivors:
                os.kill(pid, signal.SIGKILL)
