"""The clusters this process has open, for whoever must close them all.

Two callers need the list and must not know the client's code: the client's interpreter-exit
hook, and an engine whose task opened a `Client` of its own (engines run no ``atexit`` hook, so
the engine closes such nested clusters itself before it ends).  A cluster is anything with
``close()`` and ``forked()``; it is held weakly, so registering keeps nothing alive.
"""

from __future__ import annotations

import atexit
import multiprocessing.util  # noqa: F401  (its exit hook must be registered before ours)
import os
import weakref
from typing import List, Protocol

from .. import forkguard  # noqa: F401  (its at-fork hooks must be registered before ours: see below)


class Closable(Protocol):
    cluster_id: str

    def close(self) -> None: ...

    def forked(self) -> None: ...


_open: weakref.WeakSet = weakref.WeakSet()


def register(cluster: Closable) -> None:
    _open.add(cluster)


def discard(cluster: Closable) -> None:
    _open.discard(cluster)


def open_clusters() -> List[Closable]:
    """The clusters still open in this process (a copy)."""
    return list(_open)


def close_all() -> None:
    """Close every open cluster of this process (each close is idempotent)."""
    for cluster in open_clusters():
        cluster.close()


def _forked_child() -> None:
    """In the child: each cluster closes its client ends.  One that fails (it should not:
    see ``forkguard``) must not leave the others' ends, their lifelines above all, open."""
    for cluster in open_clusters():
        try:
            cluster.forked()
        except OSError:
            pass


# Registered when the first cluster module loads, so after multiprocessing's own exit hook, and
# therefore run before it: that hook would otherwise wait forever for engines still running.
atexit.register(close_all)
# After forkguard's hook (after_in_child hooks run in registration order): the child's
# closes below take forkguard's lock, which the fork held until then.
os.register_at_fork(after_in_child=_forked_child)
