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
        self._view = memoryview(self._scratch)
        self._buffer = bytearray()  # the start of a frame not complete yet

    def read_frames(self) -> List[bytes]:
        """Every complete frame available now, without blocking."""
        frames: List[bytes] = []
        view = self._view
        while True:
            try:
                got = os.readv(self.fd, [self._scratch])
            except BlockingIOError:
                break
            if got == 0:
                self.eof = True
                break
            if self._buffer:  # a frame began in an earlier read
                self._buffer += view[:got]
                data = memoryview(self._buffer)
            else:  # the usual case: parse straight out of the scratch buffer
                data = view[:got]
            pos, end = 0, len(data)
            while end - pos >= LENGTH.size:
                (n,) = LENGTH.unpack_from(data, pos)
                start = pos + LENGTH.size
                if end - start < n:
                    break
                frames.append(data[start : start + n].tobytes())
                pos = start + n
            if pos == end:
                rest = bytearray()
            elif pos or data.obj is not self._buffer:  # keep the partial frame: the next read overwrites the scratch
                rest = bytearray(data[pos:])
            else:  # the buffer holds just that partial frame already
                rest = self._buffer
            data.release()
            self._buffer = rest
            if got < _CHUNK:
                break
        return frames
