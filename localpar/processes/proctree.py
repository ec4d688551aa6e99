"""Process trees: what a task starts goes when its engine goes.

Three marks make an engine's descendants findable, each covering what the others cannot:

- **Subreaper** (``become_subreaper``, Linux ``PR_SET_CHILD_SUBREAPER``): an orphan
  below an engine (a double-forked daemon, a grandchild in a new session whose
  parent exited) is re-parented to the engine, not to init.  So while the engine
  lives, its process tree is complete: every descendant, exec'd or merely forked,
  whatever its session.  The engine walks it when it stops or loses its client;
  the client walks it before it stops, kills or restarts a live engine.
- **Environment** (``mark``): the engine puts ``LOCALPAR_TREE=<cluster>:<pid>`` in
  its environment, which every program its tasks exec inherits.  The kernel keeps
  it in ``/proc/<pid>/environ`` whoever the parent becomes, so after an engine
  died outright (SIGKILL, segfault, the memory limit) its descendants, by then
  re-parented out of any tree, are still found (``scan``).
- **Process group**: an engine leads its own session, so its own process group
  (``os.setsid`` at start), and every process its tasks fork or exec stays in that
  group unless it leaves on purpose (``setsid``, ``setpgid``).  After an engine
  died outright, the members of its group are found too (``scan(groups=...)``):
  what it forked without exec (a ``multiprocessing.Process``, a fork-started
  ``Pool``, ``os.fork()``), whose environment in ``/proc`` never had the mark.  A
  group is taken only while its leader is gone or a zombie: as long as it has
  members, the kernel does not give its id to another process; never the
  client's own group.

Zombies (``OrphanReaper``): an orphan the engine adopted is nobody else's to
wait for, so the engine reaps it once it has exited, after each task; a child
the engine's own code started is left to whoever started it.  The kernel does
not say which of its children a process adopted, so the rule is: a zombie child
is reaped if no handle in the engine names it (a ``subprocess.Popen`` or a
``multiprocessing`` process with its pid, or a pid ``os.fork()`` returned in the
engine) on two looks in a row (a handle is named a moment after its fork).  So
``Popen.wait()``, ``Process.join()`` and ``os.waitpid()`` in a later task still
get their exit status.  A child started otherwise (``os.posix_spawn``, a C
library's fork) and left unwaited when its task returns may be reaped: wait for it
in the task that started it.

What none reaches: *after* its engine died outright, a process that both left the
engine's process group (``setsid``, ``setpgid``) and runs without the mark (exec'd
with an environment that drops it, ``env -i`` or ``Popen(env={})``, or forked
without exec after leaving); a process handed to a service outside the tree
(``systemd-run``, ``at``, a container runtime) is never ours.

Ending is TERM, then KILL after `GRACE` seconds, through psutil objects (they
check the process start time before signalling, so a reused pid is left alone);
a process that ignores TERM is KILLed at once, and one that exited counts as ended
even while it waits, a zombie, for a slow reaper.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
import time
from typing import Any, Dict, Iterable, List, Set

import psutil

MARK = "LOCALPAR_TREE"
GRACE = 1.0  # seconds between TERM and KILL
_PR_SET_CHILD_SUBREAPER = 36


def _find_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _find_prctl()  # looked up once, on import by the client: engines forked from it skip it


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; False where it cannot."""
    return _prctl is not None and bool(_prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def mark(cluster_id: str) -> None:
    """Mark this engine's future exec'd descendants (see the module docstring)."""
    os.environ[MARK] = f"{cluster_id}:{os.getpid()}"


def scan(roots: Iterable[int] = (), marks: Iterable[str] = (), groups: Iterable[int] = ()) -> List[psutil.Process]:
    """Descendants of `roots` (not the roots), processes carrying one of `marks`, and the
    members of the process groups that `groups` led (not the leaders).

    A mark is ``"<cluster>:<pid>"`` (that engine's processes) or ``"<cluster>:"`` (the
    whole cluster's).  `groups` are the pids of engines that have ended (each led its own
    session, so its group): a group is taken only while its leader is gone or a zombie,
    so the pid is still the engine's (a group with members keeps its id from reuse), and
    never this process's own group.  One pass over /proc: each process's parent and group,
    and its environment only if `marks`.
    """
    roots = set(roots)
    own_group = os.getpgrp()
    wanted_groups = {g for g in groups if g != own_group and g > 1}
    # Each environment entry ends in NUL: "c:12" must not match "c:123".
    needles = [f"\0{MARK}={m}".encode() + (b"" if m.endswith(":") else b"\0") for m in marks]
    children: Dict[int, List[int]] = {}
    found: Set[int] = set()
    in_groups: Dict[int, Set[int]] = {}
    leader_running: Set[int] = set()
    me = os.getpid()
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state, ppid_field, pgrp_field = f.read().rpartition(b")")[2].split()[:3]
            ppid, pgrp = int(ppid_field), int(pgrp_field)
            children.setdefault(ppid, []).append(pid)
            if pid in wanted_groups and state not in (b"Z", b"X"):
                leader_running.add(pid)
            elif pgrp in wanted_groups and pid not in roots:
                in_groups.setdefault(pgrp, set()).add(pid)
            if needles and pid not in roots:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = b"\0" + f.read()
                if any(n in env for n in needles):
                    found.add(pid)
        except (OSError, ValueError, IndexError):
            continue  # gone, or not ours to read
    for group, members in in_groups.items():
        if group not in leader_running:
            found.update(members)
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found and child not in roots:
                found.add(child)
                stack.append(child)
    processes = []
    for pid in sorted(found):
        with contextlib.suppress(psutil.Error):
            processes.append(psutil.Process(pid))
    return processes


def end(processes: Iterable[psutil.Process], grace: float = GRACE) -> List[psutil.Process]:
    """TERM each, KILL those still running after `grace`; returns any that survived both.

    A process that ignores TERM (multiprocessing's resource tracker does) is KILLed at
    once: waiting the grace for it would only delay whoever ends the tree.
    """
    alive = []
    for p in {p.pid: p for p in processes}.values():  # once each, though found twice
        with contextlib.suppress(psutil.Error):
            if _ignores_term(p.pid):
                p.kill()
            else:
                p.terminate()
            alive.append(p)
    if not alive:
        return []
    alive = _wait_exited(alive, grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return _wait_exited(alive, grace)


def _wait_exited(processes: List[psutil.Process], timeout: float) -> List[psutil.Process]:
    """Those of `processes` still running after `timeout`; this process's children are reaped.

    Exited means exited, reaped or not: an orphan re-parented to a slow reaper (init in
    some containers) stays a zombie for a while, and psutil would wait for its reaping.
    A pidfd is readable once its process exits; without pidfds, psutil's wait is used.
    """
    fds: Dict[int, psutil.Process] = {}
    poller = select.poll()
    try:
        for p in processes:
            try:
                fd = os.pidfd_open(p.pid)
            except ProcessLookupError:
                continue  # gone already
            except (AttributeError, OSError):  # no pidfds here
                for fd in fds:
                    os.close(fd)
                return psutil.wait_procs(processes, timeout=timeout)[1]
            fds[fd] = p
            if not p.is_running():  # the pid was reused: ours is gone
                continue
            poller.register(fd, select.POLLIN)
        running = {fd for fd, p in fds.items() if p.is_running()}
        deadline = time.monotonic() + timeout
        while running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for fd, _ in poller.poll(remaining * 1000):
                running.discard(fd)
                poller.unregister(fd)
        for fd, p in fds.items():
            if fd not in running:
                with contextlib.suppress(OSError):  # ChildProcessError: not our child
                    os.waitpid(p.pid, os.WNOHANG)
        return [fds[fd] for fd in running]
    finally:
        for fd in fds:
            os.close(fd)


def _ignores_term(pid: int) -> bool:
    """Whether `pid` has SIGTERM ignored (``SigIgn`` in /proc/<pid>/status)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"SigIgn:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def end_descendants(cluster_id: str, grace: float = GRACE) -> None:
    """In an engine: end every process below it (its tree, and its marked processes)."""
    end(scan([os.getpid()], [f"{cluster_id}:{os.getpid()}"]), grace)


class OrphanReaper:
    """The engine's reaping of the orphans it adopted (see the module docstring).

    Owned by the engine's main thread (`reap`, between tasks), except `forked`, which
    runs in whichever thread called ``os.fork()``, just after the fork: it only adds to
    `_forked` (a set add is atomic).  Cheap when there is nothing to reap: one
    ``waitid`` that does not reap.
    """

    def __init__(self) -> None:
        self._forked: Set[int] = set()  # children os.fork() made here: their forker waits for them
        self._unnamed: Dict[int, int] = {}  # zombie children seen once with no handle: pid -> start time
        self._named: Dict[int, int] = {}  # zombie children a handle named: not looked up again

    def forked(self) -> None:
        """``os.register_at_fork(after_in_parent=...)``: the newest child of this thread is
        the one just forked (the kernel lists a thread's children in creation order)."""
        children = _children_of(threading.get_native_id())
        if children:
            self._forked.add(children[-1])

    def reap(self) -> int:
        """Reap the zombie children no handle names, seen so twice in a row; returns how many."""
        try:
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # no child at all
            self._unnamed.clear()
            return 0
        if exited is None:  # children, none exited
            self._unnamed.clear()
            return 0
        children = [pid for tid in _thread_ids() for pid in _children_of(tid)]
        self._forked.intersection_update(children)  # a pid reused since is no fork of ours
        zombies = {pid: start for pid in children if (start := _zombie_start(pid)) is not None}
        zombies = {pid: start for pid, start in zombies.items() if pid not in self._forked}
        unknown = {pid: start for pid, start in zombies.items() if self._named.get(pid) != start}
        second = [pid for pid, start in unknown.items() if self._unnamed.get(pid) == start]
        named = _named_by_handles(second) if second else set()
        reaped = 0
        for pid in second:
            if pid not in named:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        reaped += 1
        self._named = {pid: start for pid, start in zombies.items() if pid in named or self._named.get(pid) == start}
        self._unnamed = {pid: start for pid, start in unknown.items() if pid not in second}
        return reaped


def _thread_ids() -> List[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []


def _children_of(tid: int) -> List[int]:
    try:
        with open(f"/proc/self/task/{tid}/children", "rb") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def _zombie_start(pid: int) -> Any:
    """The start time of `pid` if it is a zombie, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    if not fields or fields[0] != b"Z":
        return None
    return int(fields[19])  # field 22 of stat: the start time, so a reused pid is another process


def _named_by_handles(pids: List[int]) -> Set[int]:
    """Those of `pids` that a live ``subprocess.Popen`` or ``multiprocessing`` process names."""
    import gc

    kinds = tuple(
        kind
        for kind in (
            getattr(sys.modules.get("subprocess"), "Popen", None),
            getattr(sys.modules.get("multiprocessing.process"), "BaseProcess", None),
        )
        if isinstance(kind, type)
    )
    if not kinds:
        return set()
    wanted = set(pids)
    named = set()
    for obj in gc.get_objects():
        if isinstance(obj, kinds):
            with contextlib.suppress(Exception):
                pid = getattr(obj, "pid", None)
                if pid in wanted:
                    named.add(pid)
    return named
