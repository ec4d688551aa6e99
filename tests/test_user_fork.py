"""A user's script that forks after ``Client()`` (``os.fork()``, no exec): the child exits
silently (multiprocessing's exit hook in it waits for no engine of its parent, and stops
none), and the parent's cluster keeps working (issue 23)."""

from __future__ import annotations

import contextlib
import os
import signal
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


# The collector closes a dead engine's ends; its ``os.close`` lets other threads run before the
# Connection records the close.  Here that moment is held open (the events pipe's close waits
# after the system call), and the main thread does what a replacement engine's start does in it:
# a new pipe gets the freed number (dup2 makes it that number for sure), and a fork follows.  The
# child must keep its new pipe: the at-fork hook must not take it for the dead engine's end.
# Without ``forkguard`` the fork runs inside the held moment and the child loses the pipe; with
# it the fork waits until the close is recorded (at most HELD seconds: nothing here is timed).
REUSE_SCRIPT = """
import os, signal, threading
from localpar import Client

HELD = 1.0
c = Client(1, start_method="fork")
handle = c.ledger.engines[0]
conn = handle.events
closed, go = threading.Event(), threading.Event()
real_close = conn._close
number = conn.fileno()

def held_close():
    real_close()  # the system call: the number is free from here
    closed.set()
    go.wait(HELD)  # the moment before the Connection records it

conn._close = held_close
os.kill(handle.pid, signal.SIGKILL)  # the collector closes the dead engine's ends
assert closed.wait(30), "the collector never closed the dead engine's events pipe"
r, w = os.pipe()
os.dup2(r, number)  # the new pipe's end has the old number
mine = os.fstat(number).st_ino
pid = os.fork()
if pid == 0:
    try:
        kept = os.fstat(number).st_ino == mine
    except OSError:
        kept = False
    os._exit(0 if kept else 1)
go.set()
_, status = os.waitpid(pid, 0)
print("kept" if os.waitstatus_to_exitcode(status) == 0 else "closed by the fork hook", flush=True)
os.close(number)
os.close(r)
os.close(w)
c.close()
"""


def test_a_fork_while_a_dead_engines_end_closes_keeps_the_childs_new_pipe(tmp_path: Path) -> None:
    script = tmp_path / "reuse.py"
    script.write_text(textwrap.dedent(REUSE_SCRIPT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
    except BaseException:  # hung: its forked child too: end the session the test started (still ours, unreaped)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise
    assert proc.returncode == 0, err
    assert out.strip() == "kept", err
