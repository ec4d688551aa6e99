"""The publication queue: one pipe that every engine writes publications into.

Each frame is written with a single ``write`` of at most ``PIPE_BUF`` bytes,
which the kernel makes atomic.  So no lock is shared between processes: an
engine killed mid-publication leaves either its whole frame or nothing, and can
never wedge the other engines or corrupt the stream.  Bigger payloads are
spilled into shared memory by the caller and only their reference is framed.

Writers are non-blocking: a full pipe tells the engine to coalesce its
publications locally (the client only needs the latest merged state) instead of
stalling the task.  One reader at a time, in the client, drains it.
"""

from __future__ import annotations

import fcntl
import os
import select
from multiprocessing.connection import Connection
from typing import List, Optional

from .. import forkguard
from .framing import LENGTH, FrameReader, frame

MAX_FRAME = select.PIPE_BUF  # 4096 on Linux
MAX_PAYLOAD = MAX_FRAME - LENGTH.size
_PIPE_SIZE = 1 << 20  # ask the kernel for a 1 MiB pipe: fewer full-pipe stalls


class PublicationQueue:
    """Client-side owner of the pipe; hands the write end to engines."""

    def __init__(self) -> None:
        r, w = os.pipe()
        for fd in (r, w):
            os.set_inheritable(fd, False)
        try:
            fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
        except OSError:
            pass  # keep the default size
        self.reader_fd = r
        self._reader = FrameReader(r)
        # Wrapped as a Connection so that multiprocessing can pass it to children
        # started with forkserver or spawn.
        self.writer = Connection(w, readable=False)

    def read_frames(self) -> List[bytes]:
        """Every complete frame available now, without blocking."""
        return self._reader.read_frames()

    def close_reader(self) -> None:
        """Close this process's copy of the read end (in a forked child)."""
        with forkguard.closing():  # a fork meanwhile would close the number again (see forkguard)
            if self.reader_fd >= 0:
                os.close(self.reader_fd)
                self.reader_fd = -1

    def close(self) -> None:
        self.close_reader()
        self.writer.close()


class PublicationWriter:
    """Engine-side end: atomic, non-blocking frame writes."""

    def __init__(self, writer: Connection) -> None:
        self._writer = writer
        self._fd = writer.fileno()
        os.set_blocking(self._fd, False)

    def try_put(self, payload: bytes) -> bool:
        """Write one frame now; False (nothing written) if the pipe is full."""
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"frame of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        try:
            os.write(self._fd, frame(payload))
        except BlockingIOError:
            return False
        return True

    def put(self, payload: bytes, timeout: Optional[float] = None) -> None:
        """Write one frame, waiting for room in the pipe."""
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        while not self.try_put(payload):
            if not poller.poll(None if timeout is None else int(timeout * 1000)):
                raise TimeoutError("the client has not drained publications")
