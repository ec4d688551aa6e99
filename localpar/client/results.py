"""The client's index of AsyncResults by msg_id."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    from .asyncresult import AsyncResult


class ResultIndex:
    """AsyncResults by msg_id, held weakly; cheaper per task than a WeakValueDictionary
    (no callback per entry: dead entries are swept as the index grows)."""

    def __init__(self) -> None:
        self._refs: Dict[str, Callable[[], Optional[AsyncResult]]] = {}
        self._sweep_at = 1024

    def __setitem__(self, msg_id: str, ar: AsyncResult) -> None:
        self._refs[msg_id] = weakref.ref(ar)
        if len(self._refs) >= self._sweep_at:
            self._refs = {m: ref for m, ref in self._refs.items() if ref() is not None}
            self._sweep_at = max(1024, 2 * len(self._refs))

    def __getitem__(self, msg_id: str) -> AsyncResult:
        ar = self._refs[msg_id]()
        if ar is None:
            raise KeyError(msg_id)
        return ar

    def pop(self, msg_id: str, default: Any = None) -> Any:
        ref = self._refs.pop(msg_id, None)
        ar = ref() if ref is not None else None
        return default if ar is None else ar

    def items(self) -> List[Tuple[str, AsyncResult]]:
        return [(m, ar) for m, ar in ((m, ref()) for m, ref in list(self._refs.items())) if ar is not None]

    def values(self) -> List[AsyncResult]:
        return [ar for _, ar in self.items()]
