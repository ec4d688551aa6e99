"""The engine's side of live output: a task's ``sys.stdout`` and ``sys.stderr``.

    print(...) ──► TaskStream.write ──► TaskOutput: pending text ──► Output frames on the
    (any thread of the task)              │  sent at once when FLUSH_SIZE   shared publication
                                          │  characters wait, else by the   queue (non-blocking,
    Flusher: one thread per engine ───────┘  flusher FLUSH_INTERVAL after   atomic frames)
                                             the first write
    the task returned ──► TaskOutput.close: the rest (waiting for room); the number of
                          frames goes in the task's Result (``Result.publications``)

Bounded: a write never blocks.  Frames go out with the queue's non-blocking
``try_put``; while the pipe is full the text stays pending, coalesced with what
follows (a list of strings per run of one stream, joined once per try), and no
new try is made for a FLUSH_INTERVAL.  So a task printing in a tight loop costs
one frame per FLUSH_SIZE characters or per interval, not one per print, and the
engine holds only what the client has not taken yet.  The client keeps the full
text (``ar.stdout`` equals what the task printed, as in ipyparallel): its memory
grows with the text, never with the number of prints.

Ordering: every Output frame is counted into the task's Result, as its Data
frames are; the client completes the task only once that many are applied, so
all of a task's output is on ``ar.stdout`` before its result is ready.  A
``display()`` (``kernel``) is one Display frame, counted the same way, sent after
the text written before it (``TaskOutput.display`` sends that text first), so the
client sees prints and displays in the order the task made them.

Ownership: a TaskOutput's fields are guarded by its own lock (not the engine
lock: a warning printed while localpar holds the engine lock must not deadlock).
Writes that are not the task's go to the engine's own streams instead: from a
thread that was running before the task started (one left by an earlier task),
after the task returned, or in a process the task forked.  Interrupts:
``TaskStream.write`` is shielded (``engine._SHIELDED``): an interrupt landing in
it waits until it returns to the task, so no frame or count is left half done.
"""

from __future__ import annotations

import codecs
import io
import os
import threading
import time
from typing import AbstractSet, Any, Callable, Dict, List, Optional, TextIO, Tuple

from ..wire import messages, sharedmem
from ..wire.messages import Display, Output, Spilled
from ..wire.pubqueue import MAX_PAYLOAD, PublicationWriter

FLUSH_INTERVAL = 0.03  # seconds from a write until the flusher sends it
FLUSH_SIZE = 3072  # characters pending that are sent at once (one frame of ASCII text)


class TaskOutput:
    """The output of one running task, on its way to the client."""

    def __init__(
        self,
        queue: PublicationWriter,
        engine_id: int,
        seq: int,
        flusher: Flusher,
        on_return: Callable[[], None],
        older_threads: AbstractSet[Optional[int]],
        cluster_id: str = "",
        send_event: Callable[[Any], None] = lambda event: None,
    ) -> None:
        self.queue = queue
        self.cluster_id = cluster_id  # names the segment of a spilled display
        self.send_event = send_event  # the engine's event pipe: a display that found no shared memory
        self.engine_id = engine_id
        self.seq = seq
        self.flusher = flusher
        self.on_return = on_return  # the main thread goes back to the task's code (the engine's interrupt)
        self.main_ident = threading.get_ident()
        self.lock = threading.Lock()
        self.sent = 0  # Output frames in the queue
        self.closed = False
        self._runs: List[Tuple[str, List[str]]] = []  # pending text, in order: (stream, parts)
        self._chars = 0  # characters pending
        self._armed = False  # the flusher will look at this output
        self._retry_at = 0.0  # the pipe was full: no new try before then
        self._pid = os.getpid()
        self._older = older_threads  # idents of the threads that ran before the task (not its main thread)

    def write(self, name: str, text: str, fallback: Optional[TextIO]) -> None:
        if not self._owns_write():
            if fallback is not None:
                fallback.write(text)
            return
        with self.lock:
            if self.closed:  # the task returned meanwhile
                if fallback is not None:
                    fallback.write(text)
                return
            runs = self._runs
            if runs and runs[-1][0] == name:
                runs[-1][1].append(text)
            else:
                runs.append((name, [text]))
            self._chars += len(text)
            if self._chars >= FLUSH_SIZE and time.monotonic() >= self._retry_at:
                self._send(block=False)
            if self._runs and not self._armed:
                self._armed = self.flusher.arm(self)

    def _owns_write(self) -> bool:
        """Whether a write now is the task's (see the module docstring)."""
        return not self.closed and os.getpid() == self._pid and threading.get_ident() not in self._older

    def display(self, content: Dict[str, Any], fallback: Optional[TextIO]) -> None:
        """A ``display()`` of the task (see ``kernel``): the text written before it goes
        first, then one Display frame (spilled to shared memory when it is too big for an
        atomic one, as a publication is), counted like the Output frames.  A display that
        is not the task's shows its ``text/plain`` on the engine's own stream."""
        if not self._owns_write():
            if fallback is not None:
                fallback.write(str(content.get("data", {}).get("text/plain", "")) + "\n")
            return
        with self.lock:
            if self.closed:
                return
            self._send(block=True)  # in order: what was printed before the display
            frame = messages.encode(Display(self.seq, self.engine_id, content))
            if len(frame) > MAX_PAYLOAD:
                try:
                    ref = sharedmem.export(self.cluster_id, memoryview(frame))
                except sharedmem.SharedMemoryFull as exc:
                    sharedmem.warn_full(exc)
                    self.send_event(Display(self.seq, self.engine_id, content))  # whole, on the event pipe
                    self.sent += 1
                    return
                frame = messages.encode(Spilled(self.seq, self.engine_id, 0, ref))
            self.queue.put(frame)
            self.sent += 1

    def flush_due(self) -> bool:
        """The flusher's call: send what is pending; True if some of it must wait (full pipe)."""
        with self.lock:
            self._armed = False
            if self.closed or not self._runs:
                return False
            self._send(block=False)
            self._armed = bool(self._runs)
            return self._armed

    def close(self) -> int:
        """The task returned: send the rest, waiting for room; returns the Output frames sent."""
        with self.lock:
            self.closed = True
            self._send(block=True)
            return self.sent

    def _send(self, block: bool) -> None:
        """Frame the pending text, oldest first; what a full pipe refuses stays pending."""
        runs = self._runs
        while runs:
            name, parts = runs[0]
            text = "".join(parts)
            pos = 0
            while pos < len(text):
                size = FLUSH_SIZE
                frame = messages.encode(Output(self.seq, self.engine_id, name, text[pos : pos + size]))
                while len(frame) > MAX_PAYLOAD:  # wide characters: fewer per frame
                    size //= 2
                    frame = messages.encode(Output(self.seq, self.engine_id, name, text[pos : pos + size]))
                if block:
                    self.queue.put(frame)
                elif not self.queue.try_put(frame):
                    parts[:] = [text[pos:]]  # joined once: the next try starts from here
                    self._chars = sum(len(t) for _, ps in runs for t in ps)
                    self._retry_at = time.monotonic() + FLUSH_INTERVAL
                    return
                self.sent += 1
                pos += size
            runs.pop(0)
        self._chars = 0


class TaskStream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` while a task runs.  The engine makes two, once, and
    points them at each task's output in turn (`use`); between tasks they still point at
    the last one, closed, whose writes go to the engine's own stream.

    Its `buffer` takes bytes (``sys.stdout.buffer.write``), decoded as UTF-8 into the same
    capture.  Its `fileno` is the engine's own descriptor (1 or 2), as ipykernel's streams
    give theirs: what is written there (a subprocess given ``stdout=sys.stdout``,
    ``faulthandler``'s traceback of a crash) goes to the engine's own stdout or stderr,
    uncaptured: a descriptor cannot tell whose write it takes, and a crash report must
    not depend on the engine's threads."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name
        self._output: Optional[TaskOutput] = None
        self._fallback: Optional[TextIO] = None
        self._buffer = TaskBuffer(self)

    def use(self, output: TaskOutput, fallback: Optional[TextIO]) -> None:
        """Writes go to `output` from now on; `fallback` takes those that are not the task's."""
        self._output, self._fallback = output, fallback
        self._buffer.reset()

    @property
    def buffer(self) -> TaskBuffer:
        """The binary side: bytes written here are decoded (UTF-8) into this stream."""
        return self._buffer

    def fileno(self) -> int:
        """The engine's own descriptor: 1 for stdout, 2 for stderr (uncaptured, see above)."""
        return 1 if self._name == "stdout" else 2

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        output, fallback = self._output, self._fallback
        if output is None:  # never used by a task
            return fallback.write(text) if fallback is not None else len(text)
        try:
            if not isinstance(text, str):
                raise TypeError(f"write() argument must be str, not {type(text).__name__}")
            output.write(self._name, text, fallback)
            return len(text)
        finally:
            if threading.get_ident() == output.main_ident:
                output.on_return()  # an interrupt that landed in here is raised now, in the task

    def display(self, content: Dict[str, Any]) -> None:
        """A display of the running task (``kernel.EnginePublisher``), in order with its text."""
        output = self._output
        if output is None:
            if self._fallback is not None:
                self._fallback.write(str(content.get("data", {}).get("text/plain", "")) + "\n")
            return
        try:
            output.display(content, self._fallback)
        finally:
            if threading.get_ident() == output.main_ident:
                output.on_return()

    def flush(self) -> None:
        """Nothing to do: what is written is sent within ``FLUSH_INTERVAL`` anyway."""


class TaskBuffer(io.BufferedIOBase):
    """``sys.stdout.buffer`` of a task: bytes, decoded as UTF-8 (a character split between
    two writes is kept until its end comes; bytes that are not UTF-8 become U+FFFD), then
    written to its `TaskStream`, whose rules apply."""

    def __init__(self, stream: TaskStream) -> None:
        super().__init__()
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def reset(self) -> None:
        """A new task: what the last one left of a split character is dropped."""
        self._decoder.reset()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes  # bytes, bytearray, memoryview, array: a TypeError otherwise
        text = self._decoder.decode(bytes(data))
        if text:
            self._stream.write(text)
        return size

    def flush(self) -> None:
        """Nothing to do: see ``TaskStream.flush``."""


class Flusher:
    """One daemon thread per engine: sends a task's pending output ``FLUSH_INTERVAL``
    after it was written, so that a print reaches the client while the task goes on."""

    def __init__(self) -> None:
        self._wake = threading.Condition(threading.Lock())
        self._due: List[Tuple[float, TaskOutput]] = []  # one entry per armed output: at most a few
        self._thread: Optional[threading.Thread] = None

    def arm(self, output: TaskOutput) -> bool:
        """Flush `output` soon; False if no thread could be started (then it goes out
        when FLUSH_SIZE characters wait, and when the task returns)."""
        with self._wake:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="localpar-output-flusher", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # e.g. too many threads for this user
                    return False
                self._thread = thread
            self._due.append((time.monotonic() + FLUSH_INTERVAL, output))
            self._wake.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due:
                    self._wake.wait()
                due, output = self._due[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                self._due.pop(0)
            if output.flush_due():  # a full pipe: try again an interval later
                with self._wake:
                    self._due.append((time.monotonic() + FLUSH_INTERVAL, output))
