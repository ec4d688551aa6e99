"""localpar: an IPython.parallel-style cluster on one machine, with live published data.

from localpar import Client
with Client(4) as c:
    ar = c[:].apply_async(f)
    ar.data     # what each engine published so far, live
    ar.get()    # the results, in target order
"""

from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION

from . import error
from .asyncresult import AsyncMapResult, AsyncResult
from .client import Client
from .errors import (
    ClientClosedError,
    CompositeError,
    DataStoreError,
    EngineError,
    LocalparError,
    NoEnginesError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    TaskAborted,
)
from .execreply import ExecuteReply
from .namespace import interactive
from .reference import Reference
from .view import DirectView, LoadBalancedView, parallel, remote

__version__ = "0.1.0"

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
    "AsyncMapResult",
    "AsyncResult",
    "Client",
    "ClientClosedError",
    "CompositeError",
    "DataStoreError",
    "DirectView",
    "EngineError",
    "LoadBalancedView",
    "LocalparError",
    "NoEnginesError",
    "RemoteError",
    "SerializationError",
    "TaskAborted",
    "interactive",
    "__version__",
]
