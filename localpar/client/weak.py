"""Callbacks that do not keep their object alive: ``weakly(obj, Class.method)``.

The cluster's threads hold callbacks into the `Client` (replace a dead engine, start the
Manager); held strongly, they would keep the Client from being garbage-collected (and so
closed by its finalizer)."""

from __future__ import annotations

import weakref
from typing import Any, Callable


def weakly(obj: Any, method: Callable[..., None]) -> Callable[..., None]:
    """``method(obj, *args)`` while `obj` lives; nothing once it is gone."""
    ref = weakref.ref(obj)

    def call(*args: Any) -> None:
        target = ref()
        if target is not None:
            method(target, *args)

    return call
