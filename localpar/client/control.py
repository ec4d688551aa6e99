"""The Client's engine-set calls of ipyparallel's notebooks: ``wait_for_engines``, ``shutdown``,
``send_signal``, ``interrupt``, ``broadcast_view``, ``async with``, and the engine uuids (``rc._engines``) that error
``engine_info`` names.

`EngineControl` is a mixin of `Client`: it uses only the Client's public calls (``ids``,
``ledger``, ``owner``, ``restart_engine``, ``wait_for_death``, ``resolve_targets``, ``close``).  Its
waits go through ``Ledger.wait_until``, which the collector notifies after every batch it
applies (an engine added, an engine's death), so no wake is lost.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

from ..errors import ClientClosedError
from ..wire.messages import Interrupt

if TYPE_CHECKING:
    from .ledger import Ledger
    from .view import BroadcastView, Targets

SHUTDOWN_TIMEOUT = 10.0  # seconds shutdown(block=True) waits for each engine to be gone


class _InitSignature:
    """``inspect.signature(Client)``: ``__init__``'s parameters, not those of `EngineControl.__new__`."""

    def __get__(self, obj: Any, cls: Any) -> inspect.Signature:
        init = inspect.signature(cls.__init__)
        return init.replace(parameters=list(init.parameters.values())[1:])


class EngineControl:
    """The engine-set half of `Client` (see the module docstring)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # A __new__ of a base class: code that patches Client.__new__ (ipyparallel's joblib
        # test) and deletes it on leaving gets this one back, not object's, which refuses
        # Client's arguments.
        return super().__new__(cls)

    __signature__ = _InitSignature()

    if TYPE_CHECKING:

        @property
        def ids(self) -> List[int]: ...

        @property
        def ledger(self) -> Ledger: ...

        @property
        def closed(self) -> bool: ...

        block: bool

        def close(self) -> None: ...

        @property
        def owner(self) -> Any: ...

        def restart_engine(self, engine_id: int) -> None: ...

        def wait_for_death(self, engine_id: int, timeout: float = 10) -> bool: ...

        def resolve_targets(self, targets: Targets) -> List[int]: ...

    main_globals = "cloudpickle"
    """Where a ``__main__`` function's globals come from: the client's values (``'cloudpickle'``,
    the default) or the engine's namespace (``'pickle'``); see ``picklers`` (``view.use_pickle()``)."""

    cluster: Any = None
    """The `localpar.Cluster` that started this client, if one did (as ipyparallel's ``rc.cluster``)."""

    # -- waiting for engines ---------------------------------------------------------------
    def wait_for_engines(
        self,
        n: Optional[int] = None,
        *,
        timeout: float = -1,
        block: bool = True,
        interactive: Optional[bool] = None,
        widget: Optional[bool] = None,
    ) -> Optional[Future]:
        """Wait until at least `n` engines are up (``timeout`` seconds; -1: no limit), as
        ipyparallel's.  Starts nothing: a localpar Client's engines are up once ``Client(n)``
        returns, so this returns at once unless engines are still being added
        (``add_engines`` from another thread).  `n` defaults to the size of the `Cluster`
        that made this client.  Raises ``TimeoutError`` (``block=False``: returns a
        ``concurrent.futures.Future`` that gets it).  `interactive` and `widget` (a progress
        bar in ipyparallel) are accepted; there is nothing to show progress of here."""
        if n is None:
            n = getattr(self.cluster, "n", None)
            if n is None:
                raise TypeError("n engines to wait for must be specified")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise TypeError(f"n must be an int >= 0, got {n!r}")
        future: Future = Future()
        future.set_running_or_notify_cancel()
        if self._enough(n):
            future.set_result(None)
            return None if block else future
        if block:
            self._wait_engines(n, timeout)
            return None

        def wait() -> None:
            try:
                self._wait_engines(n, timeout)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(None)

        threading.Thread(target=wait, name="localpar-wait-for-engines", daemon=True).start()
        return future

    def _enough(self, n: int) -> bool:
        return len(self.ids) >= n

    def _wait_engines(self, n: int, timeout: float) -> None:
        ledger = self.ledger
        ledger.check_can_wait()
        ledger.wait_until(lambda: ledger.closed or self._enough(n), timeout)
        if self._enough(n):
            return
        if ledger.closed:
            raise ClientClosedError(f"the client was closed while waiting for {n} engines")
        raise TimeoutError(f"{n} engines not ready in {timeout} seconds. Currently ready: {len(self.ids)}")

    # -- stopping engines ------------------------------------------------------------------
    def shutdown(
        self, targets: Targets = "all", restart: bool = False, hub: bool = False, block: Optional[bool] = None
    ) -> None:
        """Stop the engines of `targets`, as ipyparallel's: an idle engine leaves at once, a busy
        one is terminated (its pending tasks fail with ``EngineError``); the stopped ids are gone
        from ``rc.ids`` and are not replaced (even with ``restart_dead``).  ``restart=True``
        replaces each by a fresh engine with the same id (ipyparallel raises
        ``NotImplementedError`` there).  ``hub=True`` closes the whole cluster (from any of its Clients), as stopping
        ipyparallel's controller does.  With `block` (default ``rc.block``) it returns once the
        engines are gone."""
        if hub:
            self.owner.close()  # the cluster, also from an attached Client (see attach)
            return
        ids = self.resolve_targets(targets)
        if restart:
            for engine_id in ids:
                self.restart_engine(engine_id)
            return
        ledger = self.ledger
        handles = [ledger.engines[i] for i in ids]
        with ledger.lock:
            idle = {h for h in handles if not h.pending}
        for handle in handles:
            handle.retired = True  # not replaced by restart_dead
            if handle in idle:
                handle.send_stop()
            else:
                handle.process.terminate()
        if self.block if block is None else block:
            for handle in handles:
                if not self.wait_for_death(handle.id, SHUTDOWN_TIMEOUT):
                    handle.process.kill()
                    self.wait_for_death(handle.id, SHUTDOWN_TIMEOUT)

    # -- signals ---------------------------------------------------------------------------
    def send_signal(self, sig: Union[int, str], targets: Targets = None, block: Optional[bool] = None) -> None:
        """Send signal `sig` (a number or a name like ``'SIGINT'``) to the engines of `targets`.

        SIGINT raises KeyboardInterrupt in the running tasks (see `interrupt`); another signal
        acts on the engine process itself (SIGKILL ends it: its tasks fail with EngineError).
        """
        signum = getattr(signal, sig) if isinstance(sig, str) else int(sig)
        if signum == signal.SIGINT:
            self.interrupt(targets)
            return
        for engine_id in self.resolve_targets(targets):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.ledger.engines[engine_id].pid, signum)

    def interrupt(self, targets: Targets = None) -> None:
        """Raise KeyboardInterrupt in the task that each engine of `targets` (default: all)
        runs, or will run next if it has not started it yet: its oldest unfinished task at the
        moment of the call (``ar = view.apply_async(f); c.interrupt()`` stops `f`).  Tasks
        sent after the call, and those queued behind that one, run as usual."""
        ids = self.resolve_targets(targets)
        with self.ledger.lock:
            engines = [h for h in self.ledger.engines.values() if h.id in ids and h.alive and h.pending]
            oldest = [(h, min(h.pending)) for h in engines]
        for handle, seq in oldest:  # the engine sends itself SIGINT if the task runs (see engine.loop)
            handle.send_control(Interrupt(seq))

    # -- views and ids ---------------------------------------------------------------------
    def broadcast_view(self, targets: Targets = "all", is_coalescing: bool = False, **kwargs: Any) -> BroadcastView:
        """A `BroadcastView` of `targets` (ipyparallel's ``rc.broadcast_view(targets,
        is_coalescing, **kwargs)``; ``kwargs`` set flags such as ``block``).  On one machine
        it is a DirectView: ipyparallel's broadcast tree only pays off across machines."""
        from .view import BroadcastView

        ids = self.resolve_targets(targets)  # a list of ids, as ipyparallel's _build_targets gives
        view = BroadcastView(self, ids, is_coalescing=is_coalescing)  # type: ignore[arg-type]
        view.set_flags(**kwargs)
        return view

    @property
    def _engines(self) -> Dict[int, str]:
        """``{engine_id: engine_uuid}`` of the live engines: ipyparallel's private map, which its
        own tests (ported in ``tests/peer``) read to check ``engine_info``."""
        return {h.id: h.uuid for h in self.ledger.live_handles()}

    @property
    def engine_uuids(self) -> Dict[int, str]:
        """``{engine_id: engine_uuid}`` of the live engines (the uuid errors' ``engine_info``
        names; an engine keeps its uuid across ``restart_engine``)."""
        return self._engines

    # -- async with ------------------------------------------------------------------------
    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()  # as quick as the engines' exit: no thread to hand it to
