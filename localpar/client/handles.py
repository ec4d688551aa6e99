"""What the client keeps about each engine process and each task it sent.

``EngineHandle`` owns the client's ends of an engine's pipes, and a descriptor
that becomes readable when the engine process exits (a pidfd: unlike a pipe, no
process the engine started can hold it open).  Task and control frames go out
through outboxes that never block (``framing.Outbox``): what a full pipe cannot
take waits there until the collector sees room, so neither a submitting thread
nor the collector ever waits for a busy engine.  `pending`, `alive` and `ready`
belong to the ledger (``Ledger.lock``).

``TaskRecord`` is one task on one engine.  Its result fields (`status`, `value`, `error`,
times) are written before the record completes, by the collector thread for a task that
reached an engine, or by the thread that fails a task that never did (``Ledger.fail``:
dropped, refused, or failed at close); nothing writes them once the record is done, and other
threads read them only after (the Future's completion orders the two).  A load-balanced task
that failed and runs again (``retries``) is not done: the balancer's ``retry`` resets them for
the next attempt, under a new `seq`, before it is sent again.  `output` is the exception:
the collector appends the task's output to it while the task runs (an append, so
a reader's copy of the list is always consistent), and every piece of it is
there before the record completes.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Set, Tuple

from .. import forkguard
from ..errors import KernelError
from ..processes.lifeline import death_fd
from ..wire import messages
from ..wire.framing import FrameReader, Outbox
from ..wire.messages import STOP, TASK_HEADER, Control

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from .asyncresult import AsyncResult
    from .dependencies import TaskFlags


class TaskRecord:
    """One task on one engine: what the client knows of it."""

    __slots__ = (
        "seq", "msg_id", "engine_id", "result", "index", "submitted", "started", "completed",
        "received", "status", "value", "error", "output", "pubs_expected",
        "pubs_applied", "last_pubseq", "progress", "data_errors", "done",
        "call", "allowed", "abort_requested", "abort_refused", "flags", "watched", "parts", "pinned",
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
        self.error: Optional[KernelError] = None
        # ("stdout" or "stderr", text) and ("display", content dict), in arrival order; the
        # empty tuple until the first (one object less per task for the garbage collector to track).
        self.output: Sequence[Tuple[str, Any]] = ()
        self.pubs_expected: Optional[int] = None
        self.pubs_applied = 0
        self.last_pubseq = 0
        self.progress: Optional[Tuple[int, int]] = None
        self.data_errors: Tuple[str, ...] = ()  # publications that could not be applied, and why
        self.done = False
        # A load-balanced task keeps its call until it ends: an engine may hand it back
        # (messages.Reclaim) for another to run.  Under the balancer's lock.
        self.call: Optional[bytes] = None
        self.allowed: Optional[List[int]] = None
        self.abort_requested = False
        self.abort_refused = False  # its engine answered an Abort: it had started (the collector writes it)
        # Scheduling flags (retries, after, follow, timeout; ``dependencies.TaskFlags``), or None;
        # and whether another task waits for this one.  Under the balancer's lock.
        self.flags: Optional[TaskFlags] = None
        self.watched = False
        self.parts: Tuple[AsyncResult, ...] = ()  # split() results over this task alone (Ledger.lock)
        self.pinned = False  # its value or data came through shared memory (the collector writes it)

    @property
    def stdout(self) -> str:
        """What the task wrote to ``sys.stdout`` so far (all of it once the record is done)."""
        return "".join([text for name, text in self.output if name == "stdout"])

    @property
    def stderr(self) -> str:
        return "".join([text for name, text in self.output if name == "stderr"])

    @property
    def outputs(self) -> List[Any]:
        """The task's displays (IPython display_data contents: data, metadata, transient), in order."""
        return [content for name, content in self.output if name == "display"]


class EngineHandle:
    """The client's side of one engine process."""

    def __init__(
        self,
        engine_id: int,
        process: BaseProcess,
        tasks: Connection,
        control: Connection,
        events: Connection,
        on_backlog: Callable[[], None],  # the collector must watch a pipe for room
    ) -> None:
        self.id = engine_id
        self.process = process
        self.pid: int = process.pid or -1
        self.tasks = Outbox(tasks, on_backlog)
        self.control = Outbox(control, on_backlog)
        self.events = events
        self.event_reader = FrameReader(events.fileno())
        self.pending: Set[int] = set()  # sequence numbers sent and not finished
        self.completed = 0  # tasks it finished
        self.alive = True
        self.ready = False  # the engine handles SIGINT (it said so on its event pipe)
        self.exitcode: Optional[int] = None
        # Why localpar killed it (the memory watch writes it once, before the kill;
        # the collector reads it after seeing the death).
        self.death_reason: Optional[str] = None
        self.retired = False  # killed on purpose, not to be replaced (add_engines' rollback)
        self.restarts = 0  # engines of this id before it; set before the ledger has it
        self.uuid = str(uuid.uuid4())  # the engine id's uuid (kept by a replacement); set likewise
        self.idle_since = time.time()  # the end of its last task (Ledger.lock)
        self.started = time.monotonic()  # how long it lived, at its death (see ``restarts``)
        self.created = time.time()  # a task that ended before this did not run on this process
        self.death_fd = death_fd(process)
        self._own_death_fd = self.death_fd != process.sentinel

    def send_task(self, seq: int, call: bytes) -> None:
        """Write task `seq`; never blocks (see ``framing.Outbox``)."""
        self.tasks.send(TASK_HEADER.pack(seq) + call)

    def send_tasks(self, tasks: List[Tuple[int, bytes]]) -> None:
        """Write these ``(seq, call)`` in order, small ones several to a system call."""
        self.tasks.send_many([TASK_HEADER.pack(seq) + call for seq, call in tasks])

    def send_stop(self) -> None:
        """Ask the engine to leave its loop once the tasks before this are done."""
        self.tasks.send(STOP)

    def send_control(self, message: Control) -> None:
        """Send a control message; never blocks, whoever sends it (the collector too)."""
        self.control.send(messages.encode(message))

    def close(self) -> None:
        """Close the client's ends; the engine is gone."""
        self.tasks.close()
        self.control.close()
        self._close_readers()

    def close_in_child(self) -> None:
        """In a process forked from the client: drop the inherited client ends (no lock is safe here)."""
        self.tasks.close_in_child()
        self.control.close_in_child()
        self._close_readers()

    def _close_readers(self) -> None:
        with forkguard.closing():  # a fork meanwhile would close the numbers again (see forkguard)
            self.events.close()
            if self._own_death_fd:
                os.close(self.death_fd)
                self._own_death_fd = False
