"""The card's Manager dict: the durable latest published state of each engine.

A ``multiprocessing.Manager`` process holds ``{engine_id: (task seq, publication
number, merged data)}``.  Engines write it coalesced (at most every 0.2 s and
after each task, never on the latency path); the client reads it when an engine
dies, to recover data the engine held back while the publication queue was full.
Keeping one entry per engine, and leaving values over 1 MB out (they would cost
a full copy per write; the client has them already), bounds its memory and cost.

The Manager is started from the drain thread so that ``Client()`` returns as soon
as the engines are forked; it watches the client's lifeline like every child.
"""

from __future__ import annotations

import os
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.managers import SyncManager
from typing import Any, Optional, Sequence, Tuple

from . import lifeline, sharedmem


def _init_manager_process(line: Connection, inherited: Sequence[int], cluster_id: str) -> None:
    lifeline.close_inherited(inherited)
    os.setsid()  # like the engines: the terminal's Ctrl-C is the client's alone
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_client_death() -> None:
        sharedmem.sweep(cluster_id)
        os._exit(0)

    lifeline.watch(line, on_client_death)


class DataStore:
    """Client-side handle on the Manager process and its dict."""

    def __init__(
        self, ctx: BaseContext, authkey: bytes, line: Connection, inherited: Sequence[int], cluster_id: str
    ) -> None:
        self._manager = SyncManager(authkey=authkey, ctx=ctx)  # a Unix socket: no TCP listener
        self._manager.start(_init_manager_process, (line, tuple(inherited), cluster_id))
        self.dict: Any = self._manager.dict()
        process = self._manager._process  # type: ignore[attr-defined]
        self.pid: int = process.pid
        self.sentinel: int = process.sentinel
        self._process = process
        self._stopped = False
        self._shutdown_lock = threading.Lock()

    def exitcode(self) -> Optional[int]:
        self._process.join(timeout=1.0)
        return self._process.exitcode

    def latest(self, engine_id: int) -> Optional[Tuple[int, int, dict]]:
        try:
            return self.dict.get(engine_id)
        except Exception:
            return None

    def shutdown(self) -> None:
        """Stop the Manager process; idempotent (close() and the drain thread may race)."""
        with self._shutdown_lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self._manager.shutdown()
        except Exception:
            pass
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=2.0)
        self.dict = None  # its connection to the (gone) Manager closes with it
        try:
            self._process.close()  # the pipes multiprocessing keeps per child
        except ValueError:
            pass  # still running after kill(): left to multiprocessing's reaper
