"""Frames on a pipe: whole frames out, partial ones kept, EOF seen."""

from __future__ import annotations

import os
import threading
import time
from multiprocessing import Pipe

from localpar.wire.framing import ATOMIC_WRITE, FrameReader, Outbox, frame, write_frame


def test_a_burst_of_frames_is_read_at_once_and_a_partial_frame_waits():
    r, w = os.pipe()
    try:
        reader = FrameReader(r)
        assert reader.read_frames() == []
        os.write(w, frame(b"one") + frame(b"") + frame(b"three"))
        assert reader.read_frames() == [b"one", b"", b"three"]
        whole = frame(b"x" * 10)
        os.write(w, whole[:7])
        assert reader.read_frames() == []
        os.write(w, whole[7:])
        assert reader.read_frames() == [b"x" * 10]
        os.write(w, frame(b"a") + whole[:2])  # a frame, then half a length prefix
        assert reader.read_frames() == [b"a"]
        os.write(w, whole[2:5])
        assert reader.read_frames() == []
        os.write(w, whole[5:] + frame(b"b"))
        assert reader.read_frames() == [b"x" * 10, b"b"]
    finally:
        os.close(r)
        os.close(w)


def test_a_frame_bigger_than_the_pipe_arrives_whole_and_eof_is_seen():
    r, w = os.pipe()
    payload = os.urandom(3 << 20)  # larger than both the pipe and one read
    writer = threading.Thread(target=lambda: (write_frame(w, payload), os.close(w)))
    writer.start()
    reader = FrameReader(r)
    frames = []
    try:
        while not reader.eof:
            frames += reader.read_frames()
        writer.join(10)
        assert frames == [payload]
    finally:
        os.close(r)


def test_an_outbox_sends_many_frames_in_order_and_leaves_what_does_not_fit_to_flush():
    """Small frames go several to a write; a big one, and what follows it, waits for flush()."""
    reader_conn, writer_conn = Pipe(duplex=False)
    asked = []
    outbox = Outbox(writer_conn, lambda: asked.append(True))
    reader = FrameReader(reader_conn.fileno())
    try:
        small = [bytes([i]) * (i * 37 % 300) for i in range(60)]  # several writes' worth, whole frames each
        outbox.send_many(small)
        assert not outbox.backlog and not asked
        assert reader.read_frames() == small
        big = os.urandom(50 * ATOMIC_WRITE)  # more than the pipe holds: flushed in parts
        outbox.send_many([b"before", big, b"after"])
        assert outbox.backlog and asked == [True]  # the collector is asked once to flush
        outbox.send_many([b"later"])  # behind the backlog, never ahead of it
        got = []
        deadline = time.monotonic() + 10
        while outbox.backlog or len(got) < 4:
            assert time.monotonic() < deadline, got[:3]
            outbox.flush()
            got += reader.read_frames()
        assert got == [b"before", big, b"after", b"later"]
        outbox.send_many([b"again"])  # the backlog is gone: written at once
        assert not outbox.backlog and reader.read_frames() == [b"again"] and asked == [True]
    finally:
        outbox.close()
        reader_conn.close()
