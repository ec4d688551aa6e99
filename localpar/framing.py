"""Length-prefixed frames on a pipe: ``[u32 little-endian length][payload]``.

The reader takes everything that has arrived in one ``read`` and returns every
complete frame, keeping a partial one for next time; so a burst of results or
publications costs one system call, not two per message plus a poll.  The
publication queue and each engine's event pipe use it.
"""

from __future__ import annotations

import os
import struct
from typing import List

LENGTH = struct.Struct("<I")
_CHUNK = 1 << 18  # bytes read per system call


def frame(payload: bytes) -> bytes:
    """`payload` with its length prefix."""
    return LENGTH.pack(len(payload)) + payload


def write_frame(fd: int, payload: bytes) -> None:
    """Write one whole frame to a blocking pipe (the kernel may take it in parts)."""
    view = memoryview(frame(payload))
    while view:
        view = view[os.write(fd, view) :]


class FrameReader:
    """The reading end of a non-blocking pipe of frames; one reader at a time."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.eof = False  # the writers are gone and every byte was read
        self._scratch = bytearray(_CHUNK)
        self._buffer = bytearray()

    def read_frames(self) -> List[bytes]:
        """Every complete frame available now, without blocking."""
        scratch = self._scratch
        while True:
            try:
                got = os.readv(self.fd, [scratch])
            except BlockingIOError:
                break
            if got == 0:
                self.eof = True
                break
            self._buffer += memoryview(scratch)[:got]
            if got < _CHUNK:
                break
        frames: List[bytes] = []
        buf, pos, end = self._buffer, 0, len(self._buffer)
        while end - pos >= LENGTH.size:
            (n,) = LENGTH.unpack_from(buf, pos)
            start = pos + LENGTH.size
            if end - start < n:
                break
            frames.append(bytes(buf[start : start + n]))
            pos = start + n
        if pos:
            del buf[:pos]
        return frames
