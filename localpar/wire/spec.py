"""`EngineSpec`: all an engine process is given when it starts."""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import NamedTuple


class EngineSpec(NamedTuple):
    """All an engine process needs; picklable for forkserver and spawn starts."""

    engine_id: int
    cluster_id: str
    authkey: bytes
    tasks: Connection  # client -> engine, frames of TASK_HEADER + call (see framing)
    control: Connection  # client -> engine, frames of messages.Control
    events: Connection  # engine -> client, frames of messages.Event
    publications: Connection  # write end of the shared publication queue
    lifeline: Connection  # read end of the client's lifeline
    spin_hint: str  # the segment of the client's SpinHint
