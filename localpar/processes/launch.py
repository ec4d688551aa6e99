"""Start methods for engines and the Manager, and which to use when.

multiprocessing's forkserver and spawn children re-import the parent's ``__main__``
(as ``__mp_main__``), which runs a script with no ``if __name__ == "__main__"``
guard a second time.  localpar's children need nothing from it: functions travel
by value with cloudpickle.  So these contexts start their processes with the
preparation data minus the main module, through Process classes of their own
(``_Popen`` is how each multiprocessing context chooses its launcher); nothing of
the standard library is patched, so other users of multiprocessing in the same
process, and threads starting engines at once, see no difference.

Every context's processes (the fork one's too) are waited for only by the process that
started them: multiprocessing lists each started child, and a fork of the client (the
user's own ``os.fork()``) inherits that list; at its exit, multiprocessing's hook joins
each, and a plain ``join`` there fails (``AssertionError: can only join a child process``).
Elsewhere than in their starter, `OwnedProcess.join` returns at once: those engines are
the starter's to wait for.
"""

from __future__ import annotations

import importlib
import io
import multiprocessing
import os
import sys
import threading
from multiprocessing import context, popen_forkserver, popen_spawn_posix, process, reduction, spawn, util
from multiprocessing.context import BaseContext
from typing import Any, Dict, List, Optional

_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


def _preparation_data(name: str) -> Dict[str, Any]:
    data = spawn.get_preparation_data(name)
    for key in _MAIN_KEYS:
        data.pop(key, None)
    return data


def _serialized(popen: Any, process_obj: Any) -> io.BytesIO:
    """What a forkserver or spawn child reads first: its preparation data, then the process."""
    buf = io.BytesIO()
    context.set_spawning_popen(popen)
    try:
        # multiprocessing's own Popen classes read the name the same way (Process has no public getter).
        reduction.dump(_preparation_data(process_obj._name), buf)
        reduction.dump(process_obj, buf)
    finally:
        context.set_spawning_popen(None)
    return buf


# The Popen classes' private parts below (_fds, util.close_fds, ...) are what the
# standard library's own _launch uses; typeshed does not describe them.
class _ForkServerPopen(popen_forkserver.Popen):
    _fds: List[int]

    def _launch(self, process_obj: Any) -> None:
        from multiprocessing import forkserver

        buf = _serialized(self, process_obj)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        parent_w = os.dup(w)  # the child's sign that this process lives
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))  # type: ignore[attr-defined]
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _SpawnPopen(popen_spawn_posix.Popen):
    _fds: List[int]

    def _launch(self, process_obj: Any) -> None:
        from multiprocessing import resource_tracker

        tracker_fd: int = resource_tracker.getfd()  # type: ignore[assignment]
        self._fds.append(tracker_fd)
        buf = _serialized(self, process_obj)
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        try:
            cmd = spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)
            self._fds.extend([child_r, child_w])
            self.pid = util.spawnv_passfds(spawn.get_executable(), cmd, self._fds)  # type: ignore[arg-type]
            self.sentinel = parent_r
            with open(parent_w, "wb", closefd=False) as f:
                f.write(buf.getbuffer())
        finally:
            self.finalizer = util.Finalize(self, util.close_fds, [parent_r, parent_w])  # type: ignore[attr-defined]
            os.close(child_r)
            os.close(child_w)


class OwnedProcess(process.BaseProcess):
    """A process that only its starter waits for (see the module docstring)."""

    localpar_starter: Optional[int] = None

    def start(self) -> None:
        self.localpar_starter = os.getpid()
        super().start()

    def join(self, timeout: Optional[float] = None) -> None:
        if self.localpar_starter is not None and os.getpid() != self.localpar_starter:
            return  # a fork of the starter: the process is not this one's child
        super().join(timeout)


class _ForkProcess(OwnedProcess, context.ForkProcess):
    pass


class _ForkServerProcess(OwnedProcess, context.ForkServerProcess):
    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _ForkServerPopen(process_obj)


class _SpawnProcess(OwnedProcess, context.SpawnProcess):
    _start_method = "spawn"

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _SpawnPopen(process_obj)


class _ForkContext(context.ForkContext):
    Process = _ForkProcess


class _ForkServerContext(context.ForkServerContext):
    Process = _ForkServerProcess


class _SpawnContext(context.SpawnContext):
    Process = _SpawnProcess


def get_context(method: str) -> BaseContext:
    """The context for `method` ("fork", "forkserver" or "spawn"); children never re-run ``__main__``."""
    if method == "forkserver":
        return _ForkServerContext()
    if method == "spawn":
        return _SpawnContext()
    if method == "fork" and "fork" in multiprocessing.get_all_start_methods():
        return _ForkContext()
    return multiprocessing.get_context(method)


def default_start_method() -> str:
    """fork while the process has no other thread (fast, safe); forkserver otherwise.

    From Python 3.12, which warns about forking any threaded process, native
    threads count too (e.g. a BLAS thread pool started by importing numpy).
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        if sys.version_info < (3, 12) or _native_thread_count() == 1:
            return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _native_thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def threaded_method() -> str:
    """The start method once this process runs threads (the collector, at least).

    Forking a threaded process is formally unsafe and warns from Python 3.12;
    before that, our forked children touch no lock another thread may hold.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and sys.version_info < (3, 12):
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def clean_method() -> str:
    """The start method for a child started in the background, at a moment the user's code
    does not choose (the Manager): never a fork of this process.  A fork copies every open
    descriptor, close-on-exec ones too, so a fork that lands while another thread is inside
    ``subprocess.Popen`` gives the child Popen's error pipe, and Popen waits until that child
    exits.  A forkserver's children are forked from a process that holds none of them."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


ENGINE_LOOP = "localpar.engine.loop"


def preload_engine() -> None:
    """Load the engine's modules in this process, so that engines forked from it start with
    them (a fork's import would cost each engine milliseconds).  Named, not imported: the
    client side's source does not depend on the engine's."""
    importlib.import_module(ENGINE_LOOP)


def run_engine(spec: Any) -> None:
    """The target of every engine process: the engine's own entry point, looked up by name."""
    importlib.import_module(ENGINE_LOOP).run_engine(spec)
