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
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Callable, Optional

from .. import forkguard


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
        with forkguard.closing():  # a fork meanwhile would close the number again (see forkguard)
            if self.write_fd >= 0:
                os.close(self.write_fd)
                self.write_fd = -1

    def close(self) -> None:
        """Cut the line: every child still alive starts exiting."""
        self.close_writer()
        self.reader.close()


def broken(fd: int) -> bool:
    """Read the lifeline `fd` (blocking until it is readable): True once the client is gone.
    Nothing is ever written to it, so it becomes readable only at its end."""
    try:
        return not os.read(fd, 1)
    except InterruptedError:
        return False
    except OSError:
        return True


def watch(reader: Connection, on_parent_death: Callable[[], None]) -> threading.Thread:
    """Start a daemon thread that calls `on_parent_death` when the client is gone (the
    Manager's; an engine watches its lifeline from its control thread)."""

    def wait_for_eof() -> None:
        fd = reader.fileno()
        while not broken(fd):
            pass
        on_parent_death()

    thread = threading.Thread(target=wait_for_eof, name="localpar-lifeline", daemon=True)
    thread.start()
    return thread


def exit_status(process: BaseProcess, death: int) -> Optional[int]:
    """The exit code of `process`, which has exited (`death`, from `death_fd`, said so),
    as multiprocessing gives it (negative: killed by that signal); None if unknown.

    Read through the pidfd without reaping, where it can be.  Any thread's
    ``Process.start()`` (the Manager's, a replacement engine's, the user's own) reaps
    every exited child of multiprocessing's, and a ``join`` that runs between that
    thread's ``waitpid`` and its noting the status finds no child and returns None.
    So if the child is reaped already, the status is the reaping thread's to note:
    give it the GIL for a while (at most `REAPED_ELSEWHERE_WAIT`); there is nothing
    else to wait on.
    """
    if death != process.sentinel:
        try:
            found = os.waitid(os.P_PIDFD, death, os.WEXITED | os.WNOWAIT)
        except (AttributeError, OSError):
            found = None
        if found is not None:
            return found.si_status if found.si_code == os.CLD_EXITED else -found.si_status
    process.join(timeout=1.0)
    deadline = time.monotonic() + REAPED_ELSEWHERE_WAIT
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.001)
    return process.exitcode


REAPED_ELSEWHERE_WAIT = 0.1


def death_fd(process: BaseProcess) -> int:
    """A descriptor readable once `process` has exited: a pidfd where the kernel has them.

    The fallback, multiprocessing's sentinel, is a pipe that the process's own
    children inherit: it reports the death only once they are gone too.
    """
    try:
        return os.pidfd_open(process.pid)  # type: ignore[arg-type]
    except (AttributeError, OSError):
        return process.sentinel
