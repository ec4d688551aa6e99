"""Shared-memory segments that carry big buffers between processes.

A segment is a file in /dev/shm (or the temp dir where there is none), created
0600 so only the user can read it, named ``localpar-<cluster>-<pid>-<n>``.
The sender writes a buffer into it once; the receiver maps it copy-on-write
(zero-copy, yet writable).  Engines send results and publications through a
`SegmentPool` and reuse a segment once the client's array on it is garbage;
the client unlinks the segments it sent when their task ends.  Anything a crash
leaves behind is swept by cluster prefix at close, when an engine dies, and by
every child when it sees the client die.

Space is reserved when a segment is made (``reserve``, i.e. ``posix_fallocate``):
a full /dev/shm is then a `SharedMemoryFull` error at once, never a SIGBUS
when a page is first written.  Callers keep such a buffer in the message
instead (``serialization``), with a one-time warning (``warn_full``).

An idle engine gives memory back: free pooled segments beyond
``SegmentPool.IDLE_KEEP_BYTES`` (32 MiB) are unlinked once it has been idle
for ``SegmentPool.IDLE_TRIM_SECONDS`` (0.5 s); while tasks run, up to
``MAX_FREE_BYTES`` stay ready for reuse.

``LOCALPAR_SHM_DIR`` (read at import, so engines inherit it) puts segments
in another directory: for tests, or a machine whose /dev/shm is too small.
"""

from __future__ import annotations

import errno
import glob
import itertools
import mmap
import os
import sys
import tempfile
import warnings
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

SHM_DIR_ENV = "LOCALPAR_SHM_DIR"
_SHM_DIR = os.environ.get(SHM_DIR_ENV) or ("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
_counter = itertools.count()
_warned_full = False
_warn_on_stderr = False


class SharedMemoryFull(OSError):
    """No room in the shared-memory directory for a segment; the message names it and its free space."""


def reserve(fd: int, nbytes: int) -> None:
    """Allocate `nbytes` for the segment open on `fd` now, so that a full directory is an
    ``OSError(ENOSPC)`` here rather than a SIGBUS at the first write of a mapped page."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, nbytes)  # a file system without fallocate: no reservation possible


def _create(name: str, nbytes: int) -> int:
    """A new 0600 segment of `nbytes` reserved bytes, open read-write; `SharedMemoryFull` if no room."""
    fd = os.open(path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        reserve(fd, nbytes)
    except BaseException as exc:
        os.close(fd)
        unlink(name)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SharedMemoryFull(exc.errno, f"{_SHM_DIR} is full: {_space(nbytes)}") from None
        raise
    return fd


def _space(needed: int) -> str:
    try:
        st = os.statvfs(_SHM_DIR)
        free, size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    except OSError:
        return f"{_mib(needed)} needed"
    return f"{_mib(needed)} needed, {_mib(free)} free of {_mib(size)}"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def warn_full(exc: SharedMemoryFull) -> None:
    """Say once per process that big buffers travel in the message instead of shared memory."""
    global _warned_full
    if _warned_full:
        return
    _warned_full = True
    text = (
        f"localpar: {exc.strerror}; big buffers are sent through the pipe instead "
        f"(slower, and with more memory); give {_SHM_DIR} more room, or set {SHM_DIR_ENV} to a bigger tmpfs"
    )
    if _warn_on_stderr:  # an engine: the task's stderr, which the client shows as ar.stderr
        sys.stderr.write(f"RuntimeWarning: {text}\n")
    else:
        warnings.warn(text, RuntimeWarning, stacklevel=3)


def warn_on_stderr() -> None:
    """In an engine: `warn_full` writes to ``sys.stderr`` (the running task's), whatever the
    warning filters it inherited from the client say, and once for this process."""
    global _warn_on_stderr, _warned_full
    _warn_on_stderr, _warned_full = True, False


class SegmentRef(NamedTuple):
    """The name and size of a segment; what travels in place of the buffer.

    A pooled segment belongs to its sender, who reuses it once the receiver
    releases it; any other segment is unlinked by the receiver (the client).
    """

    name: str
    nbytes: int
    pooled: bool = False
    at: int = -1  # where it goes in the pickle stream (``serialization``); -1: an out-of-band buffer


def prefix(cluster_id: str) -> str:
    return f"localpar-{cluster_id}-"


def path(name: str) -> str:
    """Where segment `name` lives."""
    return os.path.join(_SHM_DIR, name)


def export(cluster_id: str, buf: memoryview, label: Optional[str] = None) -> SegmentRef:
    """Copy `buf` into a new private segment and return its reference.

    Its name ends with a counter, or with `label` for a segment with a purpose.
    Raises `SharedMemoryFull` if there is no room for it.
    """
    name = f"{prefix(cluster_id)}{os.getpid()}-{next(_counter) if label is None else label}"
    view = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
    fd = _create(name, max(view.nbytes, 1))
    try:
        written = 0
        while written < view.nbytes:
            written += os.write(fd, view[written:])
    except BaseException:
        os.close(fd)
        unlink(name)
        raise
    os.close(fd)
    return SegmentRef(name, view.nbytes)


def attach(ref: SegmentRef) -> memoryview:
    """Map a segment copy-on-write; the mapping outlives the file."""
    if ref.nbytes == 0:
        return memoryview(bytearray())
    fd = os.open(path(ref.name), os.O_RDONLY)
    try:
        mapping = mmap.mmap(fd, ref.nbytes, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    return memoryview(mapping)


class SegmentPool:
    """A sender's reusable segments.

    Copying into pages that are already mapped runs at memcpy speed; the first
    write into a new segment pays for the kernel allocating and zeroing its
    pages (measured ~5x slower for 64 MB).  So an engine keeps the segments it
    sent, and reuses each once the client says the array built on it is gone.

    Free segments are bounded: at most ``MAX_FREE_BYTES`` while tasks run, and
    ``IDLE_KEEP_BYTES`` once the engine has been idle ``IDLE_TRIM_SECONDS``
    (``trim``): an idle engine holds no more shared memory than that, besides
    the segments the client still uses.
    """

    MAX_FREE_BYTES = 512 * 1024 * 1024
    IDLE_KEEP_BYTES = 32 * 1024 * 1024
    IDLE_TRIM_SECONDS = 0.5

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self._free: List[Tuple[str, mmap.mmap]] = []  # oldest first
        self._busy: Dict[str, mmap.mmap] = {}

    def export(self, buf: memoryview) -> SegmentRef:
        view = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
        n = view.nbytes
        name, mapping = self._take(n)
        mapping[:n] = view
        self._busy[name] = mapping
        return SegmentRef(name, n, pooled=True)

    def _take(self, n: int) -> Tuple[str, mmap.mmap]:
        fits = [(len(m), i) for i, (_, m) in enumerate(self._free) if n <= len(m) <= 2 * n + (1 << 20)]
        if fits:
            return self._free.pop(min(fits)[1])
        name = f"{prefix(self.cluster_id)}{os.getpid()}-{next(_counter)}"
        try:
            fd = _create(name, max(n, 1))
        except SharedMemoryFull:
            self.trim(0)  # free segments too small or too big for this buffer: give their room back
            fd = _create(name, max(n, 1))
        try:
            return name, mmap.mmap(fd, max(n, 1))
        finally:
            os.close(fd)

    def release(self, name: str) -> None:
        mapping = self._busy.pop(name, None)
        if mapping is None:
            return
        self._free.append((name, mapping))
        self.trim(self.MAX_FREE_BYTES)

    @property
    def free_bytes(self) -> int:
        """The size of the segments waiting for reuse."""
        return sum(len(m) for _, m in self._free)

    def trim(self, keep_bytes: int) -> None:
        """Unlink free segments, oldest first, until at most `keep_bytes` of them are left."""
        while self._free and self.free_bytes > keep_bytes:
            old, m = self._free.pop(0)
            m.close()
            unlink(old)

    def close(self) -> None:
        """Unlink every segment; mappings the client still holds stay valid."""
        for name, m in [*self._free, *self._busy.items()]:
            m.close()
            unlink(name)
        self._free, self._busy = [], {}


def unlink(name: str) -> None:
    try:
        os.unlink(path(name))
    except FileNotFoundError:
        pass


def sweep(cluster_id: str, pid: int | None = None) -> int:
    """Unlink every segment of a cluster (or of one process of it); returns the count."""
    pattern = prefix(cluster_id) + (f"{pid}-*" if pid is not None else "*")
    names = glob.glob(os.path.join(_SHM_DIR, pattern))
    for path in names:
        unlink(os.path.basename(path))
    return len(names)


def sweep_made_by(pids: Iterable[int]) -> int:
    """Unlink every segment that one of `pids` made, in any cluster; returns the count.

    For processes that have ended: an engine's own segments, and those of a cluster that
    one of its tasks opened and left open (the nested client's spin page is named after
    the engine it ran in), which nobody else would remove once that engine is gone.
    A name is ``localpar-<cluster>-<pid>-<label>`` (see `export`).
    """
    makers = {str(pid) for pid in pids}
    count = 0
    for found in glob.glob(os.path.join(_SHM_DIR, "localpar-*-*-*")):
        name = os.path.basename(found)
        if name.split("-")[2] in makers:
            unlink(name)
            count += 1
    return count
