"""Checks made before a cluster starts anything: a clear error instead of a late, bare one.

- the engine count: an int, at least 1, and at most ``MAX_ENGINES_PER_CPU`` engines per
  usable CPU unless the caller says ``oversubscribe=True`` (``Client(1000)`` on two cores
  would otherwise start processes until memory runs out);
- file descriptors: the client process keeps ``FDS_PER_ENGINE`` open per engine, so
  under a small ``ulimit -n`` a big cluster fails half-way with ``Too many open files``.

Where the descriptor counts come from (all in the client process)::

    per engine (FDS_PER_ENGINE = 6)   its task, control and event pipe ends (client.py,
                                      _start_engine), its pidfd (handles.py), and the two
                                      pipes multiprocessing keeps per child process (its
                                      sentinel, and a pipe whose end the child watches)
    per cluster (FDS_PER_CLUSTER = 13) the lifeline pipe (2), the publication queue (2),
                                      the ledger's doorbell pipe (2), the spin page (1),
                                      the Manager process's two pipes and its pidfd, and
                                      up to three connections to it (one per thread using
                                      its dict)
    while starting (FDS_STARTING = 6) the child's ends of the pipes of the engine or
                                      Manager being started, closed once it runs

Arrays received through shared memory hold one more descriptor each while they live.
"""

from __future__ import annotations

import errno
import numbers
import os
import resource
from typing import Optional

from .spin import usable_cpus

MAX_ENGINES_PER_CPU = 16
FDS_PER_ENGINE = 6
FDS_PER_CLUSTER = 13
FDS_STARTING = 6


def max_engines() -> int:
    """Engines a cluster may have without ``oversubscribe=True``."""
    return MAX_ENGINES_PER_CPU * usable_cpus()


def engine_count(n: object, *, oversubscribe: bool = False, name: str = "n") -> int:
    """`n` as an engine count: a TypeError if it is no int, a ValueError if < 1 or too many."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an int (the number of engines), got {type(n).__name__} {n!r}")
    count = int(n)
    if count < 1:
        raise ValueError(f"a cluster needs at least one engine, got {name}={count}")
    bound = max_engines()
    if count > bound and not oversubscribe:
        raise ValueError(
            f"{count} engines on {usable_cpus()} usable CPUs is more than {bound} ({MAX_ENGINES_PER_CPU} per CPU), "
            "which mostly exhausts memory; pass oversubscribe=True to start them anyway"
        )
    return count


def open_descriptors() -> int:
    """Descriptors this process has open now."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # listdir's own descriptor
    except OSError:
        return 0  # no /proc: nothing to compare against


def descriptors_needed(engines: int, new_cluster: bool = True) -> int:
    """Descriptors `engines` more engines (and a new cluster, if `new_cluster`) need on top of those open."""
    return engines * FDS_PER_ENGINE + (FDS_PER_CLUSTER if new_cluster else 0) + FDS_STARTING


def check_descriptors(engines: int, new_cluster: bool = True, limit: Optional[int] = None) -> None:
    """Raise ``OSError(EMFILE)`` saying why, if starting `engines` engines would exceed ``ulimit -n``.

    Called before anything is started, so a refused cluster leaves nothing behind.
    """
    if limit is None:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        return
    already = open_descriptors()
    needed = already + descriptors_needed(engines, new_cluster)
    if needed <= limit:
        return
    fit = max(0, (limit - already - descriptors_needed(0, new_cluster)) // FDS_PER_ENGINE)
    cluster = f" and {FDS_PER_CLUSTER} for the cluster" if new_cluster else ""
    raise OSError(
        errno.EMFILE,
        f"starting {engines} engine{'s' if engines != 1 else ''} needs about {needed} file descriptors "
        f"({FDS_PER_ENGINE} per engine{cluster}, {FDS_STARTING} while one starts, {already} open already), "
        f"but this process may open {limit} (ulimit -n, RLIMIT_NOFILE); {fit} engines fit. "
        "Raise the limit (ulimit -n 4096, or resource.setrlimit(resource.RLIMIT_NOFILE, ...)) or start fewer engines",
    )
