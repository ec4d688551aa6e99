"""No fork sees a descriptor closed but still recorded as open.

A process forked from the client (a replacement engine, the Manager, the user's own
``os.fork()``) closes the client's ends it inherited, by the numbers that the client's
objects record (``processes.clusters``' at-fork hook).  The client closes such an end in
two steps: the ``close`` system call, then the record (a ``Connection``'s handle set to
None, a number set to -1).  ``os.close`` lets other threads run between the two; a thread
that makes a pipe there gets the freed number, and the child it forks next closes its own
new pipe, taking it for the old end (an engine then dies at start with EBADF).

So every close of an end that a child would close again runs under `closing()`, and
every ``fork`` waits for it: `lock` is taken before each fork (``os.register_at_fork``)
and let go after it, in the parent and in the child (whose one thread is the forking
one).  Nothing under the lock blocks or forks, and the at-fork hook in the child closes
without it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

lock = threading.Lock()


@contextlib.contextmanager
def closing() -> Iterator[None]:
    """Close descriptors and record them closed in here: no fork happens meanwhile."""
    with lock:
        yield


def _release() -> None:
    lock.release()


os.register_at_fork(before=lock.acquire, after_in_parent=_release, after_in_child=_release)
