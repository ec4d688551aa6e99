"""Checks made before a cluster starts anything: a clear error instead of a late, bare one.

- the engine count: an int, at least 1, and at most ``MAX_ENGINES_PER_CPU`` engines per
  usable CPU unless the caller says ``oversubscribe=True`` (``Client(1000)`` on two cores
  would otherwise start processes until memory runs out);
- file descriptors: the client process keeps ``FDS_PER_ENGINE`` open per engine, so
  under a small ``ulimit -n`` a big cluster fails half-way with ``Too many open files``;
- threads and processes (``ulimit -u``, RLIMIT_NPROC, counted per user across all of
  its processes): each engine is a process with threads of its own.  A cluster that
  cannot fit even in the whole limit is refused up front; one that fails half-way
  because the user's other processes took the rest (``can't start new thread``, a fork's
  ``EAGAIN``) gets an error naming the limit instead (``process_limit_error``), and
  the client stops what it had started.  Far more engines than CPUs start, but with a
  warning: they mostly wait for each other and take memory.

Where the descriptor counts come from (all in the client process)::

    per engine (FDS_PER_ENGINE = 6)   its task, control and event pipe ends (client.py,
                                      _start_engine), its pidfd (handles.py), and the two
                                      pipes multiprocessing keeps per child process (its
                                      sentinel, and a pipe whose end the child watches)
    per cluster (FDS_PER_CLUSTER = 17) the lifeline pipe (2), the publication queue (2),
                                      the ledger's doorbell pipe (2), the spin page (1),
                                      the Manager process's two pipes and its pidfd, up
                                      to three connections to it (one per thread using
                                      its dict), and the forkserver the Manager starts
                                      from (launch.clean_method): its "alive" pipe end and
                                      the resource tracker's, kept, and two more while
                                      the forkserver itself starts
    while starting (FDS_STARTING = 6) the child's ends of the pipes of the engine or
                                      Manager being started, closed once it runs

Arrays received through shared memory hold one more descriptor each while they live.
"""

from __future__ import annotations

import contextlib
import errno
import numbers
import os
import resource
import warnings
from typing import Iterator, Optional

from .spin import usable_cpus

MAX_ENGINES_PER_CPU = 16
WARN_ENGINES_PER_CPU = 4  # above this, Client() warns
FDS_PER_ENGINE = 6
FDS_PER_CLUSTER = 17
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


def warn_if_oversubscribed(count: int, stacklevel: int = 3) -> None:
    """A UserWarning if `count` engines are far more than the usable CPUs (but allowed)."""
    cpus = usable_cpus()
    if count > WARN_ENGINES_PER_CPU * cpus:
        warnings.warn(
            f"{count} engines on {cpus} usable CPU{'s' if cpus != 1 else ''}: more than {WARN_ENGINES_PER_CPU} "
            "per CPU mostly wait for each other, and each takes its own memory",
            UserWarning,
            stacklevel=stacklevel,
        )


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


# -- threads and processes (ulimit -u) -----------------------------------------------------------
PROCESSES_PER_ENGINE = 5  # its process; control (and lifeline), output, Manager-writer threads; one in the Manager
TASKS_PER_CLUSTER = 6  # the collector and Manager-start threads, the Manager (3), a forkserver


def process_limit() -> Optional[int]:
    """This user's limit on threads and processes (RLIMIT_NPROC), or None if none applies
    (unlimited, or root, whom the kernel exempts)."""
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if soft == resource.RLIM_INFINITY or os.getuid() == 0:
        return None
    return soft


def user_tasks() -> Optional[int]:
    """Threads and processes this user runs now (what RLIMIT_NPROC counts); None without /proc.
    One pass over /proc: only for an error message, never on the path of a start."""
    uid, count = str(os.getuid()), 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                fields = dict(line.split(b":", 1) for line in f if b":" in line)
            if fields[b"Uid"].split()[0].decode() == uid:
                count += int(fields[b"Threads"])
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return count


def check_processes(engines: int, new_cluster: bool = True, limit: Optional[int] = None) -> None:
    """Raise ``OSError(EAGAIN)`` saying why, if `engines` engines could not fit in ``ulimit -u``
    even if this user ran nothing else.  Cheap (no /proc scan): called before anything starts."""
    if limit is None:
        limit = process_limit()
    if limit is None:
        return
    cluster = TASKS_PER_CLUSTER if new_cluster else 0
    needed = engines * PROCESSES_PER_ENGINE + cluster + (1 if new_cluster else 0)  # + this process
    if needed <= limit:
        return
    fit = max(0, (limit - cluster - 1) // PROCESSES_PER_ENGINE)
    raise OSError(
        errno.EAGAIN,
        f"starting {engines} engine{'s' if engines != 1 else ''} needs about {needed} threads and processes "
        f"({PROCESSES_PER_ENGINE} per engine{f' and {cluster} for the cluster' if cluster else ''}), but this user "
        f"may run {limit} in all (ulimit -u, RLIMIT_NPROC); at most {fit} engines fit, fewer while other "
        "processes of this user run. Raise the limit (ulimit -u) or start fewer engines",
    )


def is_process_limit(exc: BaseException) -> bool:
    """Whether `exc` is what a thread or fork gets when no more threads or processes are allowed."""
    if isinstance(exc, RuntimeError):
        return "can't start new thread" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.EAGAIN


def at_process_limit() -> bool:
    """Whether this user is at its RLIMIT_NPROC, or within an engine of it (a /proc scan)."""
    limit = process_limit()
    if limit is None:
        return False
    running = user_tasks()
    return running is not None and running + PROCESSES_PER_ENGINE >= limit


def process_limit_note() -> Optional[str]:
    """Why a child may have failed to start (the Manager, an engine), if this user is at its limit."""
    return limit_reached() if at_process_limit() else None


def limit_reached() -> str:
    """Which limit on threads and processes is reached, and how many this user runs."""
    limit = process_limit()
    running = user_tasks() if limit is not None else None
    if limit is None:
        return (
            "the system's limit on threads and processes is reached (kernel.threads-max, "
            "kernel.pid_max, or the cgroup's pids.max)"
        )
    now = "" if running is None else f"; this user runs {running} now"
    return f"this user's limit on threads and processes is reached (ulimit -u, RLIMIT_NPROC = {limit}{now})"


def process_limit_error(what: str, exc: BaseException) -> OSError:
    """The clear error for `what` failing to start because of the thread and process limit."""
    return OSError(
        errno.EAGAIN,
        f"could not start {what}: {limit_reached()} ({type(exc).__name__}: {exc}). "
        "Raise the limit (ulimit -u) or start fewer engines",
    )


@contextlib.contextmanager
def starting(what: str) -> Iterator[None]:
    """Turn a start that failed for want of threads or processes into ``process_limit_error``.

    Some failures do not say why (a forkserver that could not fork is an ``EOFError``):
    those are explained too when this user is at its limit."""
    try:
        yield
    except (RuntimeError, OSError, EOFError) as exc:
        if is_process_limit(exc) or at_process_limit():
            raise process_limit_error(what, exc) from exc
        raise
