"""The results of maps: a flat list in input order (`AsyncMapResult`), its unordered form, and
the joined result of ``gather`` and ``@parallel`` calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, List, Set

from .asyncresult import AsyncResult

if TYPE_CHECKING:
    from .client import Client


class AsyncMapResult(AsyncResult):
    """The result of a map: a flat list in input order, iterable as results arrive."""

    parts_hold_lists = True

    def __init__(self, client: Client, fname: str, chunks: List[int], return_exceptions: bool = False) -> None:
        super().__init__(client, fname, single=False, return_exceptions=return_exceptions)
        self._chunks = chunks  # how many items each task computed

    @property
    def _return_exceptions(self) -> bool:
        """ipyparallel's name for `return_exceptions` (its own tests read it)."""
        return self.return_exceptions

    def finish(self) -> None:
        if self.done():
            return
        errors = [r.error for r in self._records if r.error is not None]
        if errors:
            super().finish()
            return
        self.release_segments()
        flat: List[Any] = []
        for r in self._records:
            flat.extend(r.value)
        self.set_result(flat)

    def __iter__(self) -> Iterator[Any]:
        for record in self._records:
            self._wait_for_record(record)
            if record.error is not None:
                if not self.return_exceptions:
                    raise record.error
                yield record.error
                continue
            yield from record.value

    def _with_exceptions(self) -> Any:
        """The flat results; a failed task's error stands for its chunk (as ipyparallel does)."""
        flat: List[Any] = []
        for r in self._records:
            if r.error is not None:
                flat.append(r.error)
            else:
                flat.extend(r.value)
        return flat

    def __len__(self) -> int:
        return sum(self._chunks)

    @property
    def progress(self) -> int:
        """How many items are computed (finished tasks' chunks), as ipyparallel counts."""
        return sum(n for r, n in zip(self._records, self._chunks) if r.done)


class UnorderedMapResult(AsyncMapResult):
    def __iter__(self) -> Iterator[Any]:
        yielded: Set[int] = set()
        while len(yielded) < len(self._records):
            self.wait_until(lambda: any(r.done and r.seq not in yielded for r in self._records), None)
            for r in self._records:
                if r.done and r.seq not in yielded:
                    yielded.add(r.seq)
                    if r.error is not None:
                        if not self.return_exceptions:
                            raise r.error
                        yield r.error
                        continue
                    yield from r.value


def join_parts(parts: List[Any]) -> Any:
    """Join per-engine parts as ipyparallel does: arrays concatenated, sequences chained."""
    if parts and all(type(p).__module__ == "numpy" and hasattr(p, "shape") for p in parts):
        import numpy as np

        return np.concatenate(parts)
    if all(isinstance(p, (list, tuple)) for p in parts):
        return [item for p in parts for item in p]
    return list(parts)


def join_round_robin(parts: List[Any]) -> Any:
    """Join parts made round-robin (``dist='r'``: part i holds items i, i + n, ...) back into
    input order: arrays interleaved into one array, sequences into one list."""
    if parts and all(type(p).__module__ == "numpy" and hasattr(p, "shape") for p in parts):
        import numpy as np

        first = parts[0]
        out = np.empty((sum(p.shape[0] for p in parts), *first.shape[1:]), dtype=np.result_type(*parts))
        for i, p in enumerate(parts):
            out[i :: len(parts)] = p
        return out
    if all(isinstance(p, (list, tuple)) for p in parts):
        longest = max((len(p) for p in parts), default=0)
        return [p[k] for k in range(longest) for p in parts if k < len(p)]
    return list(parts)


class JoinedResult(AsyncMapResult):
    """One AsyncResult whose value is its parts' results joined (gather, parallel), contiguous
    blocks (``dist='b'``) or round-robin (``'r'``)."""

    def __init__(self, parts: AsyncResult, dist: str = "b") -> None:
        AsyncResult.__init__(self, parts.client, parts.fname)
        self._chunks = [1] * len(parts.records)
        self._records = parts.records
        self._data = parts.data_slots()
        self._parts = parts
        self._joiner = join_round_robin if dist == "r" else join_parts
        parts.add_done_callback(self._join)

    def _join(self, parts: Any) -> None:
        if not self.mark_sent():  # cancelled
            return
        try:
            value = self._joiner(parts.result(timeout=0))
        except BaseException as exc:
            self.set_exception(exc)
        else:
            self.set_result(value)
