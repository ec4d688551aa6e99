"""Shared-memory segments that carry big buffers between processes.

A segment is a file in /dev/shm (or the temp dir where there is none), created
0600 so only the user can read it, named ``localpar-<cluster>-<pid>-<n>``.
The sender writes a buffer into it once; the receiver maps it copy-on-write
(zero-copy, yet writable) and the *client* unlinks it: at once for data coming
from engines, when the task ends for arguments sent to engines.  Anything a
crash leaves behind is swept by cluster prefix at close and by every child when
it sees the client die.
"""

from __future__ import annotations

import glob
import itertools
import mmap
import os
import tempfile
from typing import NamedTuple

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_counter = itertools.count()


class SegmentRef(NamedTuple):
    """The name and size of a segment; what travels in place of the buffer."""

    name: str
    nbytes: int


def prefix(cluster_id: str) -> str:
    return f"localpar-{cluster_id}-"


def _path(name: str) -> str:
    return os.path.join(_SHM_DIR, name)


def export(cluster_id: str, buf: memoryview) -> SegmentRef:
    """Copy `buf` into a new private segment and return its reference."""
    name = f"{prefix(cluster_id)}{os.getpid()}-{next(_counter)}"
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
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
    fd = os.open(_path(ref.name), os.O_RDONLY)
    try:
        mapping = mmap.mmap(fd, ref.nbytes, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    return memoryview(mapping)


def unlink(name: str) -> None:
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        pass


def sweep(cluster_id: str, pid: int | None = None) -> int:
    """Unlink every segment of a cluster (or of one process of it); returns the count."""
    pattern = prefix(cluster_id) + (f"{pid}-*" if pid is not None else "*")
    names = glob.glob(os.path.join(_SHM_DIR, pattern))
    for path in names:
        unlink(os.path.basename(path))
    return len(names)
