"""Showing a call's output as it arrives: ``%%px --stream`` and ``ar.stream_output()``.

    collector ──► TaskRecord.output (appends) ──► OutputPrinter.print_new ──► sys.stdout,
                  Ledger.notify_waiters           (the waiting thread)        sys.stderr

The collector only appends; printing happens in the thread that waits (the
magic's, or the thread of ``stream_output``), so a slow terminal never holds up
the client's one reader.  The format is ipyparallel's: a ``[stdout:0] `` line
whenever the stream or engine changes, then the text as it was written; each
engine's error (tracebacks up to ``CompositeError.tb_limit``, one line after
that) and its ``Out[0:n]`` as soon as its task ends.
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from ..errors import CompositeError

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .handles import TaskRecord


class OutputPrinter:
    """Prints what a call's tasks write, once each piece, as it arrives."""

    def __init__(self, ar: AsyncResult) -> None:
        self.ar = ar
        self.records: List[TaskRecord] = list(ar.records)
        self._printed = [0] * len(self.records)  # output pieces shown, per record
        self._ended = [False] * len(self.records)  # outcome shown, per record
        self._trailing_newline = True
        self._last_prefix = ""
        self._errors = 0
        self._lock = threading.Lock()  # the streaming thread and the final call of its owner

    def state(self) -> Tuple[int, int]:
        """What has arrived: changes whenever there is something new to print."""
        return sum(len(r.output) for r in self.records), sum(r.done for r in self.records)

    def _changed_since(self, seen: Tuple[int, int], stop: Optional[threading.Event]) -> bool:
        return (stop is not None and stop.is_set()) or self.state() != seen

    def finished(self) -> bool:
        return all(r.done for r in self.records)

    def print_new(self) -> None:
        """Print the output that arrived since the last call, and the outcome of tasks that ended."""
        with self._lock:
            for i, record in enumerate(self.records):
                done = record.done  # first: once done, its output is all there (the ordering guarantee)
                pieces = record.output
                end = len(pieces)
                for name, text in pieces[self._printed[i] : end]:
                    stream = sys.stdout if name == "stdout" else sys.stderr
                    self._display(text, f"[{name}:{record.engine_id}] ", stream)
                self._printed[i] = end
                if done and not self._ended[i]:
                    self._ended[i] = True
                    self._show_outcome(record)
            sys.stdout.flush()
            sys.stderr.flush()

    def follow(self, stop: threading.Event) -> None:
        """Print until the tasks end or `stop` is set (the owner then notifies the ledger)."""
        while True:
            seen = self.state()
            finished = self.finished()  # before the look: output that came before the end is printed
            self.print_new()
            if finished or stop.is_set():
                return
            self.ar.wait_until(functools.partial(self._changed_since, seen, stop), None)

    def _display(self, text: str, prefix: str, file: object) -> None:
        """ipyparallel's ``AsyncResult._display_stream``: a prefix line when the source changes."""
        if not text:
            return
        if prefix == self._last_prefix:
            prefix = ""
        else:
            self._last_prefix = prefix
        pre = "\n" if prefix and not self._trailing_newline else ""
        sep = "\n" if prefix else ""
        self._trailing_newline = text.endswith("\n")
        print(f"{pre}{prefix}{sep}{text}", file=file, end="")  # type: ignore[call-overload]

    def _show_outcome(self, record: TaskRecord) -> None:
        if record.error is not None:
            self._errors += 1
            if self._errors <= CompositeError.tb_limit:
                print("\n".join(record.error.render_traceback()), file=sys.stderr)
            else:
                print(record.error, file=sys.stderr)
            return
        out = getattr(record.value, "execute_result", None)
        if out is not None:
            count = out.get("execution_count", 0)
            print(f"Out[{record.engine_id}:{count}]: {out['data'].get('text/plain', '')}")


def stream_until_done(ar: AsyncResult) -> None:
    """Print `ar`'s output as it comes, in this thread, until its tasks have ended."""
    printer = OutputPrinter(ar)
    while True:
        seen = printer.state()
        finished = printer.finished()  # before the look: output that came before the end is printed
        printer.print_new()
        if finished:
            return
        ar.wait_until(functools.partial(printer._changed_since, seen, None), None)


def display_outputs(ar: AsyncResult, groupby: str = "type", result_only: bool = False) -> None:
    """``ar.display_outputs()``: each task's stdout and stderr, labelled by engine (a single-target
    result without label), then each ``execute(silent=False)`` result as ``Out[engine:n]``."""
    single = isinstance(ar.engine_id, int)
    if groupby not in ("type", "engine", "order"):
        raise ValueError(f"groupby must be one of 'type', 'engine', 'order', not {groupby!r}")
    ar.wait()

    def stream(r: TaskRecord, name: str, file: Any) -> None:
        text = getattr(r, name)
        if not text or result_only:
            return
        label = "" if single else f"[{name}:{r.engine_id}]"
        if label and "\n" in text.rstrip():
            label += "\n"
        elif label:
            label += " "
        print(label + text, end="" if text.endswith("\n") else "\n", file=file)

    def result(r: TaskRecord) -> None:
        out = getattr(r.value, "execute_result", None) if r.done else None
        if out is not None:
            count = out.get("execution_count", 0)
            print(f"Out[{r.engine_id}:{count}]: {out['data'].get('text/plain', '')}")

    if groupby == "engine":
        for r in ar.records:
            stream(r, "stdout", sys.stdout)
            stream(r, "stderr", sys.stderr)
            result(r)
        return
    for r in ar.records:
        stream(r, "stdout", sys.stdout)
    for r in ar.records:
        stream(r, "stderr", sys.stderr)
    for r in ar.records:
        result(r)
