"""ipyparallel's ``AsyncResult.split()`` / ``join()`` and ``wait(return_when=...)``.

A part is an `AsyncResult` over some of another's task records: it shares their
records and data (nothing is copied or re-sent) and resolves itself from them as
soon as they are all done, when anyone asks (``done()``, ``wait()``, ``get()``) or
when the whole call finishes.
"""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Set, Tuple

from ..errors import CompositeError
from .asyncresult import AsyncMapResult, AsyncResult

if TYPE_CHECKING:
    from .handles import TaskRecord


class _Slots(Sequence[Dict[str, Any]]):
    """A live view of some data slots of other AsyncResults: the collector replaces a slot's
    dict whole at each publication, so a part reads the slot, never a copy of it."""

    def __init__(self, slots: List[Tuple[List[Dict[str, Any]], int]]) -> None:
        self._slots = slots

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [source[k] for source, k in self._slots[i]]
        source, k = self._slots[i]
        return source[k]

    def __len__(self) -> int:
        return len(self._slots)


class PartResult(AsyncResult):
    """An AsyncResult over records that belong to other AsyncResults."""

    def __init__(self, source: AsyncResult, records: List[TaskRecord], data: _Slots, single: bool):
        super().__init__(source._client, source._fname, single=single)
        self._records = list(records)
        self._data = data  # type: ignore[assignment]
        self._return_exceptions = source._return_exceptions

    def wait(self, timeout: Optional[float] = -1, return_when: Optional[str] = None) -> Any:
        if return_when is None and not self._wait_until(lambda: all(r.done for r in self._records), timeout):
            return False
        return super().wait(timeout, return_when)

    def done(self) -> bool:
        if super().done():
            return True
        if all(r.done for r in self._records):
            self._finish_parts()
        return super().done()

    def _finish_parts(self) -> None:
        if self._state in ("CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED"):
            return
        errors = [r.error for r in self._records if r.error is not None]
        try:
            if self._single:
                record = self._records[0]
                if record.error is not None:
                    self.set_exception(record.error)
                else:
                    self.set_result(record.value)
            elif errors:
                self.set_exception(CompositeError(f"one or more exceptions raised in: {self._fname}", errors))
            else:
                self.set_result([r.value for r in self._records])
        except Exception:  # resolved by a racing thread
            pass


def split(ar: AsyncResult) -> Tuple[AsyncResult, ...]:
    if len(ar._records) == 1:
        return (ar,)
    cached = ar.__dict__.get("_split_parts")
    if cached is not None:
        return cached
    # One value per part for an apply; a map's part keeps its chunk in a list, as ipyparallel does.
    single = not isinstance(ar, AsyncMapResult)
    parts = tuple(PartResult(ar, [r], _Slots([(ar._data, i)]), single) for i, r in enumerate(ar._records))
    ar.__dict__["_split_parts"] = parts
    ar.add_done_callback(lambda _: [p.done() for p in parts])
    return parts


def join(*ars: AsyncResult) -> AsyncResult:
    if not ars:
        raise ValueError("Must specify at least one AsyncResult to join")
    if len(ars) == 1:
        return ars[0]
    records = [r for ar in ars for r in ar._records]
    slots = [(ar._data, i) for ar in ars for i in range(len(ar._records))]
    return PartResult(ars[0], records, _Slots(slots), single=False)


def wait_split(
    ar: AsyncResult, timeout: Optional[float], return_when: str
) -> Tuple[Set[AsyncResult], Set[AsyncResult]]:
    parts = split(ar)
    if return_when == concurrent.futures.FIRST_COMPLETED:

        def ready() -> bool:
            return any(p.done() for p in parts)

    elif return_when == concurrent.futures.FIRST_EXCEPTION:

        def ready() -> bool:
            finished = [p for p in parts if p.done()]
            return len(finished) == len(parts) or any(p._exception is not None for p in finished)

    elif return_when == concurrent.futures.ALL_COMPLETED:

        def ready() -> bool:
            return all(p.done() for p in parts)

    else:
        raise ValueError(f"Unrecognized return_when={return_when!r}")
    ar._wait_until(ready, timeout)
    done = {p for p in parts if p.done()}
    return done, set(parts) - done
