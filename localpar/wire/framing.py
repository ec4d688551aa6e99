"""Length-prefixed frames on a pipe: ``[u32 little-endian length][payload]``.

The reader takes everything that has arrived in one ``read`` and returns every
complete frame, keeping a partial one for next time; so a burst of results or
publications costs one system call, not two per message plus a poll.  The
outbox writes without ever blocking: what a full pipe cannot take waits in it
until the collector sees room.  Every pipe between client and engines but the
publication queue (atomic frames, see ``pubqueue``) uses one of each.
"""

from __future__ import annotations

import collections
import fcntl
import itertools
import os
import select
import struct
import threading
from multiprocessing.connection import Connection
from typing import Callable, Deque, List

from .. import chaos, forkguard

LENGTH = struct.Struct("<I")
ATOMIC_WRITE = select.PIPE_BUF  # a pipe write of at most this many bytes is never split (4096 on Linux)
_F_GETPIPE_SZ = 1032  # Linux's fcntl: the pipe's capacity
_DEFAULT_PIPE_SIZE = 1 << 16
_MAX_READ = 1 << 18
_FLUSH_BYTES = 1 << 16  # the collector's writes of a backlog: up to a default pipe's worth at once


def pipe_capacity(fd: int) -> int:
    """Bytes the pipe `fd` holds: what one read can get at most."""
    try:
        return max(fcntl.fcntl(fd, _F_GETPIPE_SZ), 4096)
    except OSError:
        return _DEFAULT_PIPE_SIZE


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
        # A whole pipe in one read, up to _MAX_READ: the buffer is zeroed when made, 1 MiB in 0.8 ms.
        self._scratch = bytearray(min(pipe_capacity(fd), _MAX_READ))
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
            if got < len(self._scratch):
                break
        return frames


class Outbox:
    """The writing end of a pipe of frames that never blocks its writers.

    `lock` guards the waiting frames, `watched` and the descriptor; nothing under it
    blocks, so any thread may send, the collector included.  Frames a full pipe
    cannot take wait here; `on_backlog` asks the collector to `flush` them as the
    reader makes room.

    A ``KeyboardInterrupt`` can land in the main thread between any two bytecodes,
    also just after ``os.write`` returned and before its count is recorded.  So a
    sender writes only frames of at most ``PIPE_BUF`` bytes (the kernel writes them
    whole or not at all), oldest first, and drops each from the queue only after
    its write: an interrupt can at worst leave a frame to be written twice (the
    reader skips what it has seen, see ``engine``) or for the next sender.  Bigger
    frames, and partial writes, are left to the collector, which no interrupt reaches;
    once it has been asked to flush, senders only append until it has.
    """

    def __init__(self, conn: Connection, on_backlog: Callable[[], None]) -> None:
        self._conn = conn
        self.fd = conn.fileno()
        os.set_blocking(self.fd, False)
        self.lock = threading.Lock()
        self._frames: Deque[memoryview] = collections.deque()
        self._on_backlog = on_backlog
        self._watched = False  # the collector was asked to flush

    @property
    def backlog(self) -> bool:
        """Frames are waiting for room in the pipe, or for the collector."""
        return bool(self._frames)

    def send(self, payload: bytes) -> None:
        """Write a frame now, or leave it for the collector: never blocks."""
        self.send_many([payload])

    def send_many(self, payloads: List[bytes]) -> None:
        """Write these frames in order now, or leave them for the collector: never blocks.
        Small frames go several to a write, each write whole frames of at most ``PIPE_BUF``
        bytes in all, so the rule above holds for each write."""
        with self.lock:
            if chaos.ENABLED:
                chaos.pause()
            if self._conn.closed:
                return
            frames = self._frames
            frames.extend(memoryview(frame(payload)) for payload in payloads)
            if self._watched:
                return  # a backlog: the collector writes it as the reader makes room
            while frames and len(frames[0]) <= ATOMIC_WRITE:
                count, size = 1, len(frames[0])
                while count < len(frames) and size + len(frames[count]) <= ATOMIC_WRITE:
                    size += len(frames[count])
                    count += 1
                chunk = frames[0] if count == 1 else b"".join(itertools.islice(frames, count))
                try:
                    os.write(self.fd, chunk)  # whole or nothing
                except BlockingIOError:
                    break
                except OSError:
                    frames.clear()  # the reader is gone (a dead engine: the collector hears of it)
                    return
                for _ in range(count):
                    frames.popleft()
            if frames and not self._watched:
                self._on_backlog()
                self._watched = True

    def flush(self) -> bool:
        """Write as much of the backlog as the pipe takes; True once it is empty.  The collector's."""
        with self.lock:
            frames = self._frames
            try:
                while frames and not self._conn.closed:
                    count, size = 1, len(frames[0])  # the oldest frames, up to _FLUSH_BYTES, in one write
                    while count < len(frames) and size < _FLUSH_BYTES:
                        size += len(frames[count])
                        count += 1
                    chunk = frames[0] if count == 1 else b"".join(itertools.islice(frames, count))
                    written = os.write(self.fd, chunk)
                    full = written < len(chunk)
                    while written:  # drop what went out; a frame written in part keeps its rest
                        head = frames[0]
                        if written < len(head):
                            frames[0] = head[written:]
                            break
                        written -= len(head)
                        frames.popleft()
                    if full:
                        break
            except BlockingIOError:
                pass
            except OSError:
                frames.clear()  # the reader is gone (a dead engine: the collector hears of it)
            if not frames:
                self._watched = False
            return not frames

    def close(self) -> None:
        """Under the lock, so that no thread writes to a descriptor number reused since."""
        with self.lock:
            self._frames.clear()
            with forkguard.closing():  # a fork meanwhile would close the number again (see forkguard)
                self._conn.close()

    def close_in_child(self) -> None:
        """In a forked child: no lock is safe to take there."""
        self._conn.close()


class Bell:
    """A pipe whose read end a poll watches; ringing it never blocks (a pending ring is enough)."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._w, False)

    def ring(self) -> None:
        try:
            os.write(self._w, b"x")
        except OSError:  # full (a ring is pending anyway) or closed (the owner is gone)
            pass

    def clear(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        with forkguard.closing():
            for fd in (self.fd, self._w):
                if fd >= 0:
                    os.close(fd)
            self.fd = self._w = -1
