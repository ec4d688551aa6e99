"""A user's script that forks after ``Client()`` (``os.fork()``, no exec): the child exits
silently (multiprocessing's exit hook in it waits for no engine of its parent, and stops
none), and the parent's cluster keeps working (issue 23)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

ROOT = str(Path(__file__).resolve().parent.parent)

SCRIPT = """
import os, sys, time
from localpar import Client
from localpar.datapub import publish_data

c = Client(2, start_method=sys.argv[1])
engines = c.engine_pids()
c[0].apply_sync(publish_data, {"a": 1})  # the Manager process is a child too
deadline = time.monotonic() + 20
while c.manager_pid is None and time.monotonic() < deadline:
    time.sleep(0.02)
assert c.manager_pid is not None
pid = os.fork()
if pid == 0:
    sys.exit(0)  # an ordinary exit: the exit hooks run, multiprocessing's too
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert c[:].apply_sync(os.getpid) == [engines[0], engines[1]]  # the parent's engines, untouched
c.close()
print("OK", flush=True)
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_forked_child_of_the_client_exits_silently(tmp_path: Path, method: str) -> None:
    script = tmp_path / "fork_child.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(script), method], capture_output=True, text=True, timeout=90, env=env,
        start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK"
    assert done.stderr == "", done.stderr  # no "AssertionError: can only join a child process"
