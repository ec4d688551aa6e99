"""What crosses the process boundary, one small named type per message.

    client ── task pipe i ──────► engine i    TASK_HEADER(seq) + call bytes, or STOP
    client ── control pipe i ───► engine i    Abort, Reclaim, Interrupt, Release, UseStore, StoreLost
    engine i ── event pipe i ───► client      Ready, Result, Aborted, Reclaimed; Data or
                                              Display too big for the queue when shared
                                              memory is full
    every engine ── pub queue ──► client      Data, Progress, Output (a task's print, live),
                                              Display (a display() on the engine: a mime
                                              bundle), or Spilled(a Data or Display too big
                                              for one atomic frame, in shared memory)

Envelopes are pickled with the C pickler as a plain tuple, the kind's number
and then the fields (a named tuple pickles by its class, six times slower both
ways); they hold only builtins and these types.  Whatever the user's code made
(a result, a published dict) travels inside them as bytes already serialized by
``serialization.dumps``, or as a builtin scalar value.  The engine imports this
module and none of the client's.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, Dict, List, NamedTuple, Tuple, Union, get_args

from .sharedmem import SegmentRef

TASK_HEADER = struct.Struct("<Q")
"""A task frame starts with the task's sequence number; the call follows (``serialization.dumps_call``)."""

STOP = b"stop"
"""A task frame that makes the engine exit its loop."""


# -- engine -> client, on the engine's event pipe ------------------------------------------
class Ready(NamedTuple):
    """The engine handles SIGINT from now on: ``Client.interrupt`` may reach it."""

    engine_id: int


class Result(NamedTuple):
    """A task ended.  `publications` counts the Data and Output messages it wrote before
    this one: its stdout and stderr travel as Output messages only."""

    seq: int
    status: str  # "value": payload is a builtin scalar; "ok": serialized bytes; "error": (type, message, traceback)
    payload: Any
    started: float
    completed: float
    publications: int


class Aborted(NamedTuple):
    """The answer to an Abort, sent at once: `seqs` had not started and will not run; `started`
    had (they run to their end)."""

    seqs: List[int]
    started: List[int]


class Reclaimed(NamedTuple):
    """The answer to a Reclaim: of the tasks asked for, these will not run here (the
    client queues them again, under new sequence numbers); the others had started."""

    seqs: List[int]


# -- engine -> client, on the shared publication queue -------------------------------------
class Data(NamedTuple):
    """One ``publish_data`` call: `delta` is the dict, as ``serialization.dumps`` made it."""

    seq: int
    engine_id: int
    pubseq: int  # 1, 2, ... within the task
    delta: bytes


class Progress(NamedTuple):
    """``report_progress(done, total)``: a hint, dropped rather than queued when the pipe is full."""

    seq: int
    engine_id: int
    done: int
    total: int


class Output(NamedTuple):
    """Text the task wrote to ``sys.stdout`` or ``sys.stderr`` (`name`), in order; writes are
    coalesced on the engine (see ``output``), so one message holds many prints."""

    seq: int
    engine_id: int
    name: str  # "stdout" or "stderr"
    text: str


class Display(NamedTuple):
    """A ``display()`` (or an inline figure) on the engine, in order with the task's Output:
    `content` is IPython's display_data content, ``{'data': {mime: ...}, 'metadata': {...},
    'transient': {...}}``, builtins only (bytes already base64 text, as Jupyter has them)."""

    seq: int
    engine_id: int
    content: Dict[str, Any]


class Spilled(NamedTuple):
    """A Data or Display message too big for one atomic frame: it waits, pickled, in a
    shared-memory segment (`pubseq` is 0 for a Display)."""

    seq: int
    engine_id: int
    pubseq: int
    ref: SegmentRef


# -- client -> engine, on the engine's control pipe ----------------------------------------
class Abort(NamedTuple):
    """Skip these tasks if they have not started; answered at once (Aborted), even while a task runs."""

    seqs: List[int]


class Reclaim(NamedTuple):
    """Hand these load-balanced tasks back unless they have started: another engine is idle.
    Answered at once, even while a task runs."""

    seqs: List[int]


class Interrupt(NamedTuple):
    """``Client.interrupt``: raise KeyboardInterrupt in task `seq` (the engine's oldest unfinished
    one when the client asked): now if it runs, as it starts if it has not; nothing once it ended."""

    seq: int


class Release(NamedTuple):
    """The client no longer uses these pooled segments: the engine may reuse them."""

    names: List[str]


class UseStore(NamedTuple):
    """The Manager is up: its dict proxy, pickled.  The engine's store writer unpickles it in
    its own thread, because unpickling a proxy talks to the Manager, which may not answer."""

    proxy: bytes


class StoreLost(NamedTuple):
    """The Manager died: every later ``publish_data`` raises DataStoreError with `reason`."""

    reason: str


Event = Union[Ready, Result, Aborted, Reclaimed, Data, Display]
Publication = Union[Data, Progress, Output, Spilled, Display]
Control = Union[Abort, Reclaim, Release, UseStore, StoreLost, Interrupt]


_KINDS: Tuple[Any, ...] = tuple(dict.fromkeys(get_args(Event) + get_args(Publication) + get_args(Control)))
_NUMBERS = {kind: number for number, kind in enumerate(_KINDS)}


def encode(message: Any) -> bytes:
    """The bytes of one envelope."""
    return pickle.dumps((_NUMBERS[type(message)], *message), protocol=5)


def decode(frame: Union[bytes, memoryview]) -> Any:
    """The envelope in `frame`."""
    number, *fields = pickle.loads(frame)
    return _KINDS[number](*fields)
