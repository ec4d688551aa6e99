"""The Manager dict: the durable latest published state of each engine.

A ``multiprocessing.Manager`` process holds ``{engine_id: (task seq, publication
number, merged data pickled by serialization.dumps_inline)}``.  Each engine writes
it from a thread of its own (``publishing.StoreWriter``), coalesced, at most every
0.2 s; the client reads it when an engine dies, to recover data the engine held
back while the publication queue was full.  Keeping one entry per engine, and
leaving values over 1 MB out (they would cost a full copy per write; the client
has them already), bounds its memory and cost.  Values travel as bytes, so the
Manager never needs to unpickle what only cloudpickle can rebuild.

The Manager starts at the cluster's first publication, in a thread of its own:
a cluster that never publishes never starts one, and starting it competes neither
with ``Client()`` nor with the first calls (it costs a fork and a process boot on a
core the engines need).  Publications made before it is up are in the client
already; the engines write it from their next one.  It watches the client's
lifeline like every child.  Nothing the client does with it can
block for long: the read after a death has a timeout, and shutdown kills it.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.managers import SyncManager
from typing import Any, List, Optional, Tuple

from ..errors import SerializationError, describe_exit
from ..processes import lifeline, limits
from ..wire import sharedmem
from ..wire.serialization import loads_inline


def _init_manager_process(line: Connection, cluster_id: str) -> None:
    os.setsid()  # like the engines: the terminal's Ctrl-C is the client's alone
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_client_death() -> None:
        sharedmem.sweep(cluster_id)
        os._exit(0)

    lifeline.watch(line, on_client_death)


class ManagerStartError(Exception):
    """The Manager process could not start or answer; says why, as far as it can be known."""


def _start_failure(exc: Exception, process: Any) -> ManagerStartError:
    """Why the start failed: the error (often a bare ``EOFError``: the process died before
    saying where it listens), how the process ended, and a reached ``ulimit -u``."""
    why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if process is not None and process.pid is not None:
        if process.is_alive():
            process.kill()
        process.join(timeout=2.0)
        if process.exitcode is not None:
            why += f"; the Manager process ended with {describe_exit(process.exitcode)} while starting"
    note = limits.process_limit_note()
    if note is None and limits.is_process_limit(exc):
        note = limits.limit_reached()
    return ManagerStartError(f"{why}; {note}" if note else why)


class DataStore:
    """Client-side handle on the Manager process and its dict."""

    def __init__(self, ctx: BaseContext, authkey: bytes, line: Connection, cluster_id: str) -> None:
        self._manager = SyncManager(authkey=authkey, ctx=ctx)  # a Unix socket: no TCP listener
        try:
            self._manager.start(_init_manager_process, (line, cluster_id))
        except Exception as exc:
            raise _start_failure(exc, getattr(self._manager, "_process", None)) from exc
        process = self._manager._process  # type: ignore[attr-defined]
        self._process = process
        self.pid: int = process.pid
        self.death_fd = lifeline.death_fd(process)
        self._stopped = False
        self._shutdown_lock = threading.Lock()
        try:
            self.dict: Any = self._manager.dict()
            self.proxy_bytes = pickle.dumps(self.dict)  # what engines rebuild the proxy from
        except BaseException as exc:
            failure = _start_failure(exc, process) if isinstance(exc, Exception) else None
            self.shutdown()
            if failure is not None:
                raise failure from exc
            raise

    def exitcode(self) -> Optional[int]:
        self._process.join(timeout=1.0)
        return self._process.exitcode

    def latest(self, engine_id: int, timeout: float) -> Optional[Tuple[int, int, dict]]:
        """``(task seq, publication number, merged data)`` of `engine_id`; None if the
        Manager has none or does not answer within `timeout` seconds (stopped, dying)."""
        answer: List[Any] = []
        reader = threading.Thread(target=self._read, args=(engine_id, answer), name="localpar-store-read", daemon=True)
        reader.start()  # a stopped Manager blocks only this thread; shutdown() kills the Manager, ending it
        reader.join(timeout)
        if not answer or answer[0] is None:
            return None
        seq, pubseq, blob = answer[0]
        try:
            return seq, pubseq, loads_inline(blob)
        except SerializationError:
            return None

    def _read(self, engine_id: int, answer: List[Any]) -> None:
        try:
            answer.append(self.dict.get(engine_id))
        except Exception:
            answer.append(None)

    def shutdown(self) -> None:
        """Stop the Manager process at once (it holds nothing the client needs any more);
        idempotent.  No message is sent: a stopped Manager could not answer it."""
        with self._shutdown_lock:
            if self._stopped:
                return
            self._stopped = True
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=2.0)
        try:
            self._manager.shutdown()  # finds the process gone: only its bookkeeping is left
        except Exception:
            pass
        self.dict = None  # its connection to the (gone) Manager closes with it
        if self.death_fd != self._process.sentinel:
            os.close(self.death_fd)
        try:
            self._process.close()  # the pipes multiprocessing keeps per child
        except ValueError:
            pass  # still running after kill(): left to multiprocessing's reaper
