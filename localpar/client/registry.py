"""The Clients this process has started, newest last, held weakly: what a bare
``localpar.register_joblib_backend()`` runs on (ipyparallel's "default cluster"), and what
``Client(profile=name)`` / ``Client(cluster_id=...)`` attach to (see ``attach``).

One lock, `_lock`, guards the list; a Client adds itself once it has started, and two
open Clients of this process never have the same ``profile`` (checked under the lock).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, List, Optional

_opened: List[weakref.ref] = []  # oldest first
_lock = threading.Lock()


def _open_clients() -> List[Any]:
    return [c for c in (r() for r in _opened) if c is not None and not c.closed]


def note_opened(client: Any) -> None:
    """A Client has started; ValueError if an open one already has its ``profile``."""
    profile = getattr(client, "profile", None)
    with _lock:
        _opened[:] = [r for r in _opened if r() is not None]
        if profile is not None and any(c.profile == profile for c in _open_clients()):
            raise ValueError(f"a cluster with profile={profile!r} is already open in this process")
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


def find_open(profile: Optional[str], cluster_id: Optional[str]) -> Any:
    """The open Client that started a cluster with this `profile` and/or `cluster_id`, or None."""
    with _lock:
        clients = _open_clients()
    for client in reversed(clients):
        if (profile is None or client.profile == profile) and (cluster_id is None or client.cluster_id == cluster_id):
            return client
    return None


def describe_open() -> List[str]:
    """``profile=..., cluster_id=...`` of each open cluster, for error messages."""
    with _lock:
        clients = _open_clients()
    return [f"cluster_id={c.cluster_id!r}" + (f" profile={c.profile!r}" if c.profile else "") for c in clients]
