"""The machine's raw limits, the yardsticks for the targets.

- ping-pong: a bare duplex ``multiprocessing.Pipe``, a child echoing bytes back;
- one-way: a child sends its ``perf_counter`` through a Pipe, the parent blocks
  in ``recv`` and records arrival minus send time;
- memcpy: ``numpy.copyto`` between two preallocated arrays.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Dict, List

from .stats import clock, median, repeat, summary

_ctx = multiprocessing.get_context("fork")


def _echo(conn: Connection) -> None:
    while True:
        msg = conn.recv_bytes()
        if not msg:
            return
        conn.send_bytes(msg)


def pipe_pingpong(calls: int) -> Dict[str, float]:
    """Round trips of a 16-byte message through a bare Pipe."""
    parent, child = _ctx.Pipe()
    proc = _ctx.Process(target=_echo, args=(child,), daemon=True)
    proc.start()
    msg = b"x" * 16

    def once() -> None:
        parent.send_bytes(msg)
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


def pipe_one_way(count: int, gap: float) -> Dict[str, float]:
    """Latency of one message, child to parent, the parent blocked in recv."""
    reader, writer = _ctx.Pipe(duplex=False)
    proc = _ctx.Process(target=_stamp_sender, args=(writer, count, gap), daemon=True)
    proc.start()
    writer.close()
    lat: List[float] = []
    try:
        for _ in range(count):
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
