"""What ipyparallel users read off an AsyncResult besides its value: msg_ids, engine ids,
stdout and stderr, timestamps, ``metadata``, ``ar['completed']`` and ``ar.completed``."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

if TYPE_CHECKING:
    from .handles import TaskRecord


def _dt(t: Optional[float]) -> Optional[datetime]:
    """A timestamp as ipyparallel gives it: a timezone-aware datetime (UTC)."""
    return None if t is None else datetime.fromtimestamp(t, timezone.utc)


class TaskMetadata:
    """The metadata half of `AsyncResult` (a mixin: it reads the AsyncResult's own records)."""

    _records: List[TaskRecord]
    _data: List[Dict[str, Any]]
    _single: bool
    _submitted: float

    if TYPE_CHECKING:  # defined by AsyncResult

        def ready(self) -> bool: ...

        def _with_exceptions(self) -> Any: ...

    # -- metadata ------------------------------------------------------------------------
    def _per_task(self, values: List[Any]) -> Any:
        return values[0] if self._single else values

    @property
    def msg_ids(self) -> List[str]:
        return [r.msg_id for r in self._records]

    @property
    def engine_id(self) -> Union[int, List[int]]:
        return self._per_task([r.engine_id for r in self._records])

    @property
    def stdout(self) -> Union[str, List[str]]:
        """What the tasks printed (a str per engine, one str for an int target): it grows while
        they run (sent every ~30 ms, see ``output``) and is all there once the result is ready.
        The full text is kept, as in ipyparallel: its memory is that of the text."""
        return self._per_task([r.stdout for r in self._records])

    @property
    def stderr(self) -> Union[str, List[str]]:
        """What the tasks wrote to ``sys.stderr``, as `stdout`."""
        return self._per_task([r.stderr for r in self._records])

    @property
    def outputs(self) -> Union[List[Dict[str, Any]], List[List[Dict[str, Any]]]]:
        """The tasks' displays (``display()``, inline figures on the engines), as ipyparallel
        has them: per task a list of ``{'data': {mime: ...}, 'metadata': {...}, 'transient': {...}}``
        (one list for an int target).  They grow while the tasks run, in order with ``stdout``."""
        return self._per_task([r.outputs for r in self._records])

    @property
    def metadata(self) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
        """Per task: engine_id, msg_id, submitted, started, completed, received, status, ..."""
        metas = [
            {
                "msg_id": r.msg_id,
                "engine_id": r.engine_id,
                "submitted": _dt(r.submitted),
                "started": _dt(r.started),
                "completed": _dt(r.completed),
                "received": _dt(r.received),
                "status": r.status,
                "error": r.error,
                "stdout": r.stdout,
                "stderr": r.stderr,
                "outputs": r.outputs,
                "data": dict(d),
                "progress": r.progress,
                "data_errors": list(r.data_errors),
            }
            for r, d in zip(self._records, self._data)
        ]
        return self._per_task(metas)

    @property
    def sent(self) -> bool:
        return bool(self._records)

    @property
    def submitted(self) -> datetime:
        return datetime.fromtimestamp(self._submitted, timezone.utc)

    @property
    def elapsed(self) -> float:
        """Seconds from submission to the last completion (or to now, while pending)."""
        if self.ready():
            ends = [r.received or r.completed for r in self._records]
            end = max((e for e in ends if e is not None), default=time.time())
        else:
            end = time.time()
        return end - self._submitted

    @property
    def wall_time(self) -> float:
        """Seconds from the first start to the last completion on the engines.

        Raises ``TimeoutError`` before the call has finished, as ipyparallel does.
        """
        if not self.ready():
            raise TimeoutError("Result not ready.")
        starts = [r.started for r in self._records if r.started is not None]
        ends = [r.completed for r in self._records if r.completed is not None]
        return (max(ends) - min(starts)) if starts and ends else 0.0

    @property
    def serial_time(self) -> float:
        """Sum of the tasks' compute times: what it would take on one engine.

        Raises ``TimeoutError`` before the call has finished, as ipyparallel does.
        """
        if not self.ready():
            raise TimeoutError("Result not ready.")
        return sum(
            (r.completed - r.started) for r in self._records if r.started is not None and r.completed is not None
        )

    # -- ipyparallel's metadata access and extras -----------------------------------------
    _METADATA_KEYS = frozenset(
        {"msg_id", "engine_id", "submitted", "started", "completed", "received", "status", "error", "stdout",
         "stderr", "data", "progress", "execute_result", "outputs"}
    )  # fmt: skip

    def __getitem__(self, key: Union[int, slice, str]) -> Any:
        """``ar['completed']``: a metadata field (a list for many tasks); ``ar[0]``, ``ar[1:]``: results.

        Results need the call to be finished (``TimeoutError`` otherwise); metadata does not.
        """
        if isinstance(key, str):
            if key not in self._METADATA_KEYS:
                raise KeyError(key)
            if key == "execute_result":
                return self.execute_result
            metadata = self.metadata
            return metadata[key] if isinstance(metadata, dict) else [md[key] for md in metadata]
        if isinstance(key, (int, slice)):
            if not self.ready():
                raise TimeoutError("Result not ready.")
            values = self._with_exceptions()
            if self._single:
                values = [values]
            part = values[key]
            for value in part if isinstance(key, slice) else [part]:
                if isinstance(value, BaseException):
                    raise value
            return part
        raise TypeError(f"Invalid key type {type(key)!r}, must be 'int', 'slice', or 'str'")

    def __getattr__(self, key: str) -> Any:
        """Metadata fields as attributes: ``ar.completed``, ``ar.started``, ``ar.status``..."""
        if key.startswith("_") or key not in TaskMetadata._METADATA_KEYS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")
        return self[key]

    def __dir__(self) -> List[str]:
        return sorted(set(super().__dir__()) | self._METADATA_KEYS)

    @property
    def execute_result(self) -> Any:
        """``execute(code, silent=False)``: each engine's ``{'data': {'text/plain': ...}}`` of the
        last expression (None elsewhere); one value for an int target."""
        return self._per_task([getattr(r.value, "execute_result", None) if r.done else None for r in self._records])
