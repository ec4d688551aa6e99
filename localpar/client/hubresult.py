"""AsyncHubResult: a result fetched from the task database, as ipyparallel's Hub returns it.

``rc.get_result(msg_id)`` of a finished task, ``rc.resubmit(ids)``: an `AsyncResult`
subclass.  Over records the client already has (``over``), it finishes itself from them
once they are all done (a record from an SQLite file of an earlier run is done when it
is loaded); made by ``resubmit``, it is a plain new call whose tasks run again.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

from .asyncresult import AsyncResult

if TYPE_CHECKING:
    from .handles import TaskRecord
    from .interface import ClusterAPI as Client


class _LazyData(Sequence[Dict[str, Any]]):
    """Each task's data, read when asked for (live while the task runs, final once done)."""

    def __init__(self, readers: List[Callable[[], Dict[str, Any]]]) -> None:
        self._readers = readers

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [read() for read in self._readers[i]]
        return self._readers[i]()

    def __len__(self) -> int:
        return len(self._readers)


class AsyncHubResult(AsyncResult):
    """A result looked up by msg_id in the client's task database (see the module docstring)."""

    _over = False
    _in_finish = False
    _finishing: threading.Lock

    def __init__(
        self,
        client: Client,
        fname: str = "unknown",
        single: bool = False,
        records: Optional[List[TaskRecord]] = None,
        readers: Optional[List[Callable[[], Dict[str, Any]]]] = None,
    ) -> None:
        super().__init__(client, fname, single)
        if records is not None:  # over existing records (see `over`)
            self._records = list(records)
            if records:  # elapsed and submitted count from the tasks' submission, not this lookup
                self._submitted = min((r.submitted for r in records if r.submitted), default=self._submitted)
            self._data = _LazyData(readers or [dict] * len(records))  # type: ignore[assignment]
            self._over = True
            self._finishing = threading.Lock()

    @classmethod
    def over(
        cls,
        client: Client,
        records: List[TaskRecord],
        readers: List[Callable[[], Dict[str, Any]]],
        single: bool,
        fname: str = "unknown",
    ) -> AsyncHubResult:
        """A result over existing `records` (`readers` give each one's data)."""
        ar = cls(client, fname, single, records, readers)
        ar.mark_sent()
        ar.done()  # finishes it now if every record is done
        return ar

    def _finish_if_all_done(self) -> None:
        # ``finish`` asks ``done()`` again: `_in_finish` ends that recursion (in this thread;
        # another one waits on the lock, or sees the Future not yet done, as it was a moment ago).
        if self._in_finish or not all(r.done for r in self._records):
            return
        with self._finishing:
            if not super().done():
                self._in_finish = True
                try:
                    self.finish()
                finally:
                    self._in_finish = False

    def done(self) -> bool:
        if super().done():
            return True
        if self._over:
            self._finish_if_all_done()
        return super().done()

    def wait(self, timeout: Optional[float] = -1, return_when: Optional[str] = None) -> Any:
        if self._over and return_when is None and not super().done():
            if not self.wait_until(lambda: all(r.done for r in self._records), timeout):
                return False
            self._finish_if_all_done()
        return super().wait(timeout, return_when)
