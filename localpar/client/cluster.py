"""``localpar.Cluster``: ipyparallel's cluster lifecycle on one machine.

So that a notebook written for ipyparallel moves by its import line alone::

    import localpar as ipp
    rc = ipp.Cluster(n=4).start_and_connect_sync()     # or: with ipp.Cluster(n=4) as rc:

On one machine the engines are children of the `Client` (no controller, no connection
file), so the Client *is* the cluster: ``start_cluster`` starts it (the engines run when it
returns), ``connect_client`` returns it (the same Client every time; a second Client of the same
engines is ``Client(profile=name)`` with ``Cluster(profile=name)``, see ``attach``),
``stop_cluster`` closes it.  The awaitable forms
(``await cluster.start_and_connect()``, ``async with``) do the same: starting engines
forks this process, which is fastest while it runs no other thread (see ``launch``), so
they start in the calling thread rather than in a worker thread (the event loop waits the
~0.1 s a start takes).

Ownership: one lock, `Cluster._lock`, guards `_client` (started, stopped) so two threads
starting one Cluster get one Client.
"""

from __future__ import annotations

import inspect
import os
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .client import Client

# ipyparallel's Cluster traits that mean nothing on one machine: accepted and ignored, so a
# notebook's Cluster(...) line runs unchanged.
IGNORED_TRAITS = frozenset(
    {"profile_dir", "cluster_file", "config", "parent", "log", "log_level", "delay",
     "engine_timeout", "load_profile", "shutdown_atexit", "send_engines_connection_env",
     "controller_args", "controller_ip", "controller_location"}
)  # fmt: skip
LOCAL_LAUNCHERS = frozenset({None, "local", "Local"})  # the only `engines=`/`controller=` launchers here


class Cluster:
    """A local cluster of `n` engines (default: one per CPU), started on demand, as ipyparallel's.

    `client_kwargs` are `Client`'s options (``start_method``, ``datastore``,
    ``oversubscribe``, ``memory_limit``, ``restart_dead``, ``profile``: the name a second
    ``Client(profile=name)`` attaches by), checked here.  ipyparallel's
    launcher settings that have no meaning on one machine (``profile_dir``, ``log_level``,
    ``delay``...) are accepted and ignored; a launcher other than the local one
    (``engines='mpi'``) is refused.
    """

    def __init__(self, *, n: Optional[int] = None, cluster_id: str = "", **client_kwargs: Any) -> None:
        from .client import Client

        for launcher in ("engines", "controller"):
            value = client_kwargs.pop(launcher, None)
            if value not in LOCAL_LAUNCHERS:
                raise ValueError(f"{launcher}={value!r}: localpar runs its engines on this machine only ('local')")
        for trait in IGNORED_TRAITS & set(client_kwargs):
            client_kwargs.pop(trait)
        inspect.signature(Client.__init__).bind(None, n, **client_kwargs)  # a TypeError names an unknown option now
        self.n = n
        self.cluster_id = cluster_id or f"{int(time.time())}-{secrets.token_hex(2)}"
        self.client_kwargs = client_kwargs
        self._client: Optional[Client] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        fields = f"cluster_id={self.cluster_id!r}, n={self.n!r}"
        client = self._client
        if client is not None and not client.closed:
            fields += f", engines=<running: {len(client.ids)}>"
        return f"<Cluster({fields})>"

    @property
    def running(self) -> bool:
        """Whether the cluster's engines run (started and not stopped)."""
        client = self._client
        return client is not None and not client.closed

    # -- the sync forms ------------------------------------------------------------------------
    def start_cluster_sync(self, n: Optional[int] = None) -> Cluster:
        """Start the engines (`n`, else the Cluster's own); returns the Cluster, as ipyparallel.
        Starting a running cluster does nothing."""
        from .client import Client

        with self._lock:
            if self.running:
                return self
            if n is not None:
                self.n = n
            # an explicit count: Client(profile=name) without one would attach, not start
            client = Client(self.n if self.n is not None else (os.cpu_count() or 1), **self.client_kwargs)
            client.cluster = self
            self._client = client
        return self

    def connect_client_sync(self, **client_kwargs: Any) -> Client:
        """The Client of the started cluster (the same one at each call)."""
        if client_kwargs:
            raise TypeError(
                f"unexpected options {sorted(client_kwargs)}: localpar's client is the cluster; "
                "give Client options to Cluster(...)"
            )
        client = self._client
        if client is None or client.closed:
            raise RuntimeError("the cluster is not running: call start_cluster_sync() first")
        return client

    def start_and_connect_sync(self, n: Optional[int] = None, activate: bool = False) -> Client:
        """Start the engines and return the Client (with ``activate``, ``%px`` runs on it)."""
        client = self.start_cluster_sync(n).connect_client_sync()
        if activate:
            client.activate()
        return client

    def stop_cluster_sync(self) -> None:
        """Stop the engines (close the Client); stopping a stopped cluster does nothing."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def start_engines_sync(self, n: Optional[int] = None) -> list:
        """Add `n` engines (default: the Cluster's `n`) to the running cluster, or start it."""
        if not self.running:
            self.start_cluster_sync(n)
            return self.connect_client_sync().ids
        count = n if n is not None else (self.n or 1)
        return self.connect_client_sync().add_engines(count)

    def stop_engines_sync(self) -> None:
        """Stop every engine; the client stays (ipyparallel's controller stays too)."""
        if self.running:
            self.connect_client_sync().shutdown(block=True)

    def restart_engines_sync(self) -> None:
        """Replace every engine by a fresh one with the same id."""
        client = self.connect_client_sync()
        for engine_id in client.ids:
            client.restart_engine(engine_id)

    def signal_engines_sync(self, signum: Any) -> None:
        """Send `signum` to every engine (SIGINT interrupts their tasks)."""
        self.connect_client_sync().send_signal(signum)

    # -- the awaitable forms (see the module docstring) -------------------------------------
    async def start_cluster(self, n: Optional[int] = None) -> Cluster:
        return self.start_cluster_sync(n)

    async def connect_client(self, **client_kwargs: Any) -> Client:
        return self.connect_client_sync(**client_kwargs)

    async def start_and_connect(self, n: Optional[int] = None, activate: bool = False) -> Client:
        return self.start_and_connect_sync(n, activate)

    async def stop_cluster(self) -> None:
        self.stop_cluster_sync()

    async def start_engines(self, n: Optional[int] = None) -> list:
        return self.start_engines_sync(n)

    async def stop_engines(self) -> None:
        self.stop_engines_sync()

    async def restart_engines(self) -> None:
        self.restart_engines_sync()

    async def signal_engines(self, signum: Any) -> None:
        self.signal_engines_sync(signum)

    # -- with / async with: the Client, as ipyparallel's ------------------------------------------
    def __enter__(self) -> Client:
        return self.start_and_connect_sync()

    def __exit__(self, *exc: Any) -> None:
        self.stop_cluster_sync()

    async def __aenter__(self) -> Client:
        return await self.start_and_connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop_cluster()
