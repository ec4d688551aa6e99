"""The Clients this process has started, newest last, held weakly: what a bare
``localpar.register_joblib_backend()`` runs on (ipyparallel's "default cluster").

One lock, `_lock`, guards the list; a Client adds itself once it has started.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, List

_opened: List[weakref.ref] = []  # oldest first
_lock = threading.Lock()


def note_opened(client: Any) -> None:
    """A Client has started."""
    with _lock:
        _opened[:] = [r for r in _opened if r() is not None]
        _opened.append(weakref.ref(client))


def latest_open_client() -> Any:
    """The newest Client of this process that is still open, or None."""
    with _lock:
        refs = list(_opened)
    for ref in reversed(refs):
        client = ref()
        if client is not None and not client.closed:
            return client
    return None
