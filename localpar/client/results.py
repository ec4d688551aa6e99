"""The client's index of AsyncResults by msg_id (and the results it holds for
``get_result(..., owner=False)``)."""

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
        self._held: Dict[str, AsyncResult] = {}  # get_result(owner=False): kept until purged

    def hold(self, msg_id: str, ar: AsyncResult) -> None:
        """Index `ar` under `msg_id` and keep it alive until `pop` (ipyparallel's ``owner=False``:
        the client keeps the result in ``rc.results`` until ``purge_local_results``)."""
        self[msg_id] = ar
        self._held[msg_id] = ar

    def held(self, msg_id: str) -> Optional[AsyncResult]:
        """The result held for `msg_id` (see `hold`), or None."""
        return self._held.get(msg_id)

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

    def __contains__(self, msg_id: object) -> bool:
        ref = self._refs.get(msg_id)  # type: ignore[call-overload]
        return ref is not None and ref() is not None

    def pop(self, msg_id: str, default: Any = None) -> Any:
        self._held.pop(msg_id, None)
        ref = self._refs.pop(msg_id, None)
        ar = ref() if ref is not None else None
        return default if ar is None else ar

    def items(self) -> List[Tuple[str, AsyncResult]]:
        return [(m, ar) for m, ar in ((m, ref()) for m, ref in list(self._refs.items())) if ar is not None]

    def values(self) -> List[AsyncResult]:
        return [ar for _, ar in self.items()]
