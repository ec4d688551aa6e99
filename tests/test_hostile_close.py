"""Ctrl-C while ``close()`` runs (issue 23): the teardown finishes, then the KeyboardInterrupt
is raised; nothing hangs at exit and no shared memory stays behind."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = """
    import os, signal, sys, threading, time
    from localpar import Client

    def stubborn():
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(30)

    c = Client(2)
    print("CLUSTER", c._cluster.cluster_id, flush=True)
    ars = [c[i].apply_async(stubborn) for i in range(2)]
    time.sleep(0.3)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C during close()
    try:
        c.close()
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
    print("CLOSED", c._cluster.closed, flush=True)
"""


def test_ctrl_c_during_close_finishes_the_teardown_then_raises(tmp_path: Path) -> None:
    script = tmp_path / "close_ctrl_c.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))  # this checkout's localpar
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, env=env, start_new_session=True
    )
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert done.returncode == 0, done.stderr
    assert "INTERRUPTED" in done.stdout  # the Ctrl-C is not swallowed
    assert lines.get("CLOSED") == "True"
    assert glob.glob(f"/dev/shm/localpar-{lines['CLUSTER']}*") == []
