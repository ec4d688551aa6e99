"""Frames on a pipe: whole frames out, partial ones kept, EOF seen."""

from __future__ import annotations

import os
import threading

from localpar.framing import FrameReader, frame, write_frame


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
