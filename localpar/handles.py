"""What the client keeps about each engine process and each task it sent.

``EngineHandle`` owns the client's ends of an engine's pipes, and a descriptor
that becomes readable when the engine process exits (a pidfd: unlike a pipe, no
process the engine started can hold it open).  Task frames go out through a
non-blocking write under `task_lock`; what a full pipe cannot take waits in the
handle's outbox, which the collector flushes as the engine reads, so a
submitting thread never waits for a busy engine.  `pending`, `alive` and
`ready` belong to the ledger (``Ledger.lock``).

``TaskRecord`` is one task on one engine.  Its result fields are written by the
collector thread alone, before the record completes; other threads read them
once it has (the Future's completion orders the two).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Deque, List, Optional, Set, Tuple

from . import chaos
from .errors import RemoteError
from .framing import FrameReader
from .framing import frame as framed
from .lifeline import death_fd
from .messages import STOP, TASK_HEADER, Control

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from .asyncresult import AsyncResult


class TaskRecord:
    """One task on one engine: what the client knows of it."""

    __slots__ = (
        "seq", "msg_id", "engine_id", "result", "index", "submitted", "started", "completed",
        "received", "status", "value", "error", "stdout", "stderr", "pubs_expected",
        "pubs_applied", "last_pubseq", "progress", "data_errors", "done",
    )  # fmt: skip

    def __init__(self, seq: int, msg_id: str, engine_id: int, result: AsyncResult, index: int) -> None:
        self.seq = seq
        self.msg_id = msg_id
        self.engine_id = engine_id
        self.result: Optional[AsyncResult] = result  # dropped once done: no reference cycle
        self.index = index
        self.submitted = time.time()
        self.started: Optional[float] = None
        self.completed: Optional[float] = None
        self.received: Optional[float] = None
        self.status: Optional[str] = None  # "ok", "error", "aborted"
        self.value: Any = None
        self.error: Optional[RemoteError] = None
        self.stdout = ""
        self.stderr = ""
        self.pubs_expected: Optional[int] = None
        self.pubs_applied = 0
        self.last_pubseq = 0
        self.progress: Optional[Tuple[int, int]] = None
        self.data_errors: List[str] = []  # publications that could not be applied, and why
        self.done = False


class EngineHandle:
    """The client's side of one engine process."""

    def __init__(
        self, engine_id: int, process: BaseProcess, tasks: Connection, control: Connection, events: Connection
    ) -> None:
        self.id = engine_id
        self.process = process
        self.pid: int = process.pid or -1
        self.tasks = tasks
        self.control = control
        self.events = events
        self.task_lock = threading.Lock()
        self.control_lock = threading.Lock()
        self.pending: Set[int] = set()  # sequence numbers sent and not finished
        self.completed = 0  # tasks it finished
        self.alive = True
        self.ready = False  # the engine handles SIGINT (it said so on its event pipe)
        self.exitcode: Optional[int] = None
        self.event_reader = FrameReader(events.fileno())
        self.tasks_fd = tasks.fileno()
        os.set_blocking(self.tasks_fd, False)
        self.outbox: Deque[memoryview] = collections.deque()  # frames waiting for room in the task pipe
        self.death_fd = death_fd(process)
        self._own_death_fd = self.death_fd != process.sentinel

    def close(self) -> None:
        """Close the client's ends; the engine is gone.  Under the pipes' locks, so that
        no thread writes to a descriptor number the system may give to something else."""
        with self.task_lock, self.control_lock:
            self.outbox.clear()
            for conn in (self.tasks, self.control, self.events):
                conn.close()
        if self._own_death_fd:
            os.close(self.death_fd)
            self._own_death_fd = False

    def close_in_child(self) -> None:
        """In a process forked from the client: drop the inherited client ends (no lock is safe here)."""
        for conn in (self.tasks, self.control, self.events):
            conn.close()
        if self._own_death_fd:
            os.close(self.death_fd)
            self._own_death_fd = False

    def send_task(self, seq: int, call: bytes) -> bool:
        """Write task `seq`, or queue it if the pipe is full: never blocks.

        True if this frame started a backlog, which the collector then flushes
        as the engine reads (a submitting thread must not wait for a busy engine).
        """
        return self._send(TASK_HEADER.pack(seq) + call)

    def send_stop(self) -> None:
        """Ask the engine to leave its loop once the tasks before this are done."""
        self._send(STOP)

    def _send(self, payload: bytes) -> bool:
        with self.task_lock:
            if chaos.ENABLED:
                chaos.pause()
            if self.tasks.closed:
                return False
            idle = not self.outbox
            self.outbox.append(memoryview(framed(payload)))
            if idle:
                self._flush()
            return idle and bool(self.outbox)

    def flush_tasks(self) -> bool:
        """Write as much of the backlog as the pipe takes; True once it is empty."""
        with self.task_lock:
            if not self.tasks.closed:
                self._flush()
            return not self.outbox

    def _flush(self) -> None:
        outbox = self.outbox
        try:
            while outbox:
                head = outbox[0]
                written = os.write(self.tasks_fd, head)
                if written < len(head):  # the rest of this frame goes first next time
                    outbox[0] = head[written:]
                    return
                outbox.popleft()
        except BlockingIOError:
            return
        except OSError:
            outbox.clear()  # the engine is gone; its death descriptor tells the collector

    def send_control(self, message: Control) -> None:
        with self.control_lock:
            if self.control.closed:
                return
            try:
                self.control.send(message)
            except OSError:
                pass  # the engine is gone; its death descriptor tells the collector
