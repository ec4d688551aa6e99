"""``localpar.error``: the exceptions under ipyparallel's module name (``ipp.error.CompositeError``)."""

from .errors import *  # noqa: F403
from .errors import (
    AlreadyDisplayedError,
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

__all__ = [
    "AlreadyDisplayedError",
    "ClientClosedError",
    "CompositeError",
    "DataStoreError",
    "EngineError",
    "LocalparError",
    "NoEnginesError",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "TaskAborted",
]
