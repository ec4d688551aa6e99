"""localpar: an IPython.parallel-style cluster on one machine, with live published data.

from localpar import Client
with Client(4) as c:
    ar = c[:].apply_async(f)
    ar.data     # what each engine published so far, live
    ar.get()    # the results, in target order

The client's modules load on first use of their names, so that task code doing
``from localpar.datapub import publish_data`` on an engine (or on an ipyparallel
engine) loads only what publishing needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import error
from .errors import (
    ClientClosedError,
    CompositeError,
    DataStoreError,
    DependencyTimeout,
    EngineError,
    ImpossibleDependency,
    InvalidDependency,
    KernelError,
    LocalparError,
    NoEnginesError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    TaskAborted,
    TaskTimeout,
    UnmetDependency,
)
from .wire.execreply import ExecuteReply
from .wire.ops import interactive
from .wire.reference import Reference

if TYPE_CHECKING:
    from .client.asyncresult import AsyncResult
    from .client.client import Client
    from .client.cluster import Cluster
    from .client.dependencies import Dependency
    from .client.hubresult import AsyncHubResult
    from .client.mapresult import AsyncMapResult
    from .client.view import BroadcastView, DirectView, LoadBalancedView, parallel, remote
    from .wire.dependent import depend, dependent, require

__version__ = "0.1.0"

# For wait(return_when=...): the same values as concurrent.futures', without importing it
# (and logging with it) into task code.
FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ALL_COMPLETED = "ALL_COMPLETED"

_LAZY = {
    "AsyncHubResult": "client.hubresult",
    "AsyncMapResult": "client.mapresult",
    "AsyncResult": "client.asyncresult",
    "BroadcastView": "client.view",
    "Client": "client.client",
    "Cluster": "client.cluster",
    "Dependency": "client.dependencies",
    "depend": "wire.dependent",
    "dependent": "wire.dependent",
    "require": "wire.dependent",
    "DirectView": "client.view",
    "LoadBalancedView": "client.view",
    "parallel": "client.view",
    "remote": "client.view",
}


def register_joblib_backend(name: str = "ipyparallel", make_default: bool = False) -> None:
    """Register joblib backend `name` on this process's default client, as ipyparallel's
    ``ipp.register_joblib_backend()``: each ``joblib.Parallel(backend=name)`` runs on a
    load-balanced view of the newest open `Client`, or starts a ``Client()`` of its own, closed
    when joblib is done with it (needs joblib)."""
    from .client.client import Client
    from .integrations.joblib_backend import register_default

    register_default(Client, name, make_default)


def __getattr__(name: str) -> Any:
    """Load the client's side when one of its names is first used (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'localpar' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "ExecuteReply",
    "Reference",
    "RemoteTraceback",
    "error",
    "parallel",
    "remote",
    "AsyncHubResult",
    "AsyncMapResult",
    "AsyncResult",
    "BroadcastView",
    "Client",
    "Cluster",
    "ClientClosedError",
    "CompositeError",
    "DataStoreError",
    "DirectView",
    "EngineError",
    "KernelError",
    "LoadBalancedView",
    "LocalparError",
    "NoEnginesError",
    "RemoteError",
    "SerializationError",
    "TaskAborted",
    "TaskTimeout",
    "UnmetDependency",
    "ImpossibleDependency",
    "DependencyTimeout",
    "InvalidDependency",
    "Dependency",
    "depend",
    "dependent",
    "require",
    "interactive",
    "register_joblib_backend",
    "__version__",
]
