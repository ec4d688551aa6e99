"""Parent-death watch: every child exits soon after the client process is gone.

The client holds the only write end of a pipe that it never writes; every child
(engines and the Manager) blocks a daemon thread reading the other end.  When the
client dies, even by SIGKILL, the kernel closes the write end, the read returns
EOF, and the child cleans its cluster's shared memory and exits.  This works for
every start method, unlike ``prctl(PR_SET_PDEATHSIG)``, which follows the forking
*thread* and exists only on Linux.
"""

from __future__ import annotations

import os
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Callable


class Lifeline:
    """The client's end: keep it open as long as the cluster lives."""

    def __init__(self) -> None:
        r, w = os.pipe()
        os.set_inheritable(r, False)
        os.set_inheritable(w, False)
        self.write_fd = w
        self.reader = Connection(r, writable=False)

    def close_writer(self) -> None:
        """Close this process's copy of the write end (in a forked child: the owner keeps its own)."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        """Cut the line: every child still alive starts exiting."""
        self.close_writer()
        self.reader.close()


def watch(reader: Connection, on_parent_death: Callable[[], None]) -> threading.Thread:
    """Start a daemon thread that calls `on_parent_death` when the client is gone."""

    def wait_for_eof() -> None:
        fd = reader.fileno()
        while True:
            try:
                if not os.read(fd, 1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        on_parent_death()

    thread = threading.Thread(target=wait_for_eof, name="localpar-lifeline", daemon=True)
    thread.start()
    return thread


def death_fd(process: BaseProcess) -> int:
    """A descriptor readable once `process` has exited: a pidfd where the kernel has them.

    The fallback, multiprocessing's sentinel, is a pipe that the process's own
    children inherit: it reports the death only once they are gone too.
    """
    try:
        return os.pidfd_open(process.pid)  # type: ignore[arg-type]
    except (AttributeError, OSError):
        return process.sentinel
