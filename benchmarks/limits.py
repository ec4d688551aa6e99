"""The machine's raw limits, the yardsticks for the targets.

- ping-pong: a bare duplex ``multiprocessing.Pipe``, a child echoing bytes back;
- one-way: a child sends its ``perf_counter`` through a Pipe, the parent blocks
  in ``recv`` and records arrival minus send time;
- both again with the waiting side spinning (``poll(0)`` in a loop, as localpar
  does for up to 100 µs) instead of blocking: the floor of that technique;
- memcpy: ``numpy.copyto`` between two preallocated arrays.
"""

from __future__ import annotations

import multiprocessing
import select
import time
from multiprocessing.connection import Connection
from typing import Dict, List

from .stats import clock, median, repeat, summary

_ctx = multiprocessing.get_context("fork")


def _spin_until_readable(conn: Connection) -> None:
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    while not poller.poll(0):
        pass


def _echo(conn: Connection, spin: bool = False) -> None:
    while True:
        if spin:
            _spin_until_readable(conn)
        msg = conn.recv_bytes()
        if not msg:
            return
        conn.send_bytes(msg)


def pipe_pingpong(calls: int, spin: bool = False) -> Dict[str, float]:
    """Round trips of a 16-byte message through a bare Pipe (both ends spinning if `spin`)."""
    parent, child = _ctx.Pipe()
    proc = _ctx.Process(target=_echo, args=(child, spin), daemon=True)
    proc.start()
    msg = b"x" * 16

    def once() -> None:
        parent.send_bytes(msg)
        if spin:
            _spin_until_readable(parent)
        parent.recv_bytes()

    try:
        return summary(repeat(once, calls, warmup=50))
    finally:
        parent.send_bytes(b"")
        proc.join(5)


def _stamp_sender(conn: Connection, count: int, gap: float) -> None:
    for k in range(count):
        conn.send((k, time.perf_counter()))
        time.sleep(gap)
    conn.close()


def pipe_one_way(count: int, gap: float, spin: bool = False) -> Dict[str, float]:
    """Latency of one message, child to parent, the parent blocked in recv (or spinning)."""
    reader, writer = _ctx.Pipe(duplex=False)
    proc = _ctx.Process(target=_stamp_sender, args=(writer, count, gap), daemon=True)
    proc.start()
    writer.close()
    lat: List[float] = []
    try:
        for _ in range(count):
            if spin:
                _spin_until_readable(reader)
            _, sent = reader.recv()
            lat.append(clock() - sent)
    finally:
        proc.join(5)
    return summary(lat[5:] or lat)


def memcpy_seconds(nbytes: int, times: int = 5) -> float:
    """Median time of copying `nbytes` between two warm, preallocated arrays."""
    import numpy as np

    src = np.ones(max(1, nbytes // 8))
    dst = np.empty_like(src)
    return median(repeat(lambda: np.copyto(dst, src), times, warmup=1))
