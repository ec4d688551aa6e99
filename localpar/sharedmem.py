"""Shared-memory segments that carry big buffers between processes.

A segment is a file in /dev/shm (or the temp dir where there is none), created
0600 so only the user can read it, named ``localpar-<cluster>-<pid>-<n>``.
The sender writes a buffer into it once; the receiver maps it copy-on-write
(zero-copy, yet writable).  Engines send results and publications through a
`SegmentPool` and reuse a segment once the client's array on it is garbage;
the client unlinks the segments it sent when their task ends.  Anything a crash
leaves behind is swept by cluster prefix at close, when an engine dies, and by
every child when it sees the client die.
"""

from __future__ import annotations

import glob
import itertools
import mmap
import os
import tempfile
from typing import Dict, List, NamedTuple, Optional, Tuple

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_counter = itertools.count()


class SegmentRef(NamedTuple):
    """The name and size of a segment; what travels in place of the buffer.

    A pooled segment belongs to its sender, who reuses it once the receiver
    releases it; any other segment is unlinked by the receiver (the client).
    """

    name: str
    nbytes: int
    pooled: bool = False


def prefix(cluster_id: str) -> str:
    return f"localpar-{cluster_id}-"


def path(name: str) -> str:
    """Where segment `name` lives."""
    return os.path.join(_SHM_DIR, name)


def export(cluster_id: str, buf: memoryview, label: Optional[str] = None) -> SegmentRef:
    """Copy `buf` into a new private segment and return its reference.

    Its name ends with a counter, or with `label` for a segment with a purpose.
    """
    name = f"{prefix(cluster_id)}{os.getpid()}-{next(_counter) if label is None else label}"
    fd = os.open(path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
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
    """

    MAX_FREE_BYTES = 512 * 1024 * 1024

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
        fd = os.open(path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, max(n, 1))
            return name, mmap.mmap(fd, max(n, 1))
        finally:
            os.close(fd)

    def release(self, name: str) -> None:
        mapping = self._busy.pop(name, None)
        if mapping is None:
            return
        self._free.append((name, mapping))
        while sum(len(m) for _, m in self._free) > self.MAX_FREE_BYTES:
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
