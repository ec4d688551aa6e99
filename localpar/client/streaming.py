"""Showing a call's output as it arrives: ``%%px --stream`` and ``ar.stream_output()``.

    collector ──► TaskRecord.output (appends) ──► OutputPrinter.print_new ──► sys.stdout,
                  Ledger.notify_waiters           (the waiting thread)        sys.stderr

The collector only appends; printing happens in the thread that waits (the
magic's, or the thread of ``stream_output``), so a slow terminal never holds up
the client's one reader.  The format is ipyparallel's:

- in a terminal (or a plain script), a ``[stdout:0] `` line whenever the stream or
  engine changes, then the text as it was written;
- in a Jupyter kernel, one output per engine and stream, ``[stdout:0] `` and all
  its text so far, updated in place as more comes (a display with a display id),
  so an engine switch never breaks a line, nor a ``\r`` progress line;
- each display of an engine (``display()``, an inline figure) under an
  ``[output:0]`` label, shown as it was made (in IPython only, as ipyparallel);
- each engine's error under ``[0:execute]`` (tracebacks up to
  ``CompositeError.tb_limit``, one line after that), and its result
  (``Out[0:n]``, rich in Jupyter) as soon as its task ends, on a line of its own.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..errors import CompositeError

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .handles import TaskRecord


_REWRITTEN = re.compile(r".*\r(?=[^\n])")  # a line's text before its last carriage return


def _ipython() -> Any:
    """The running IPython shell, or None (IPython is never imported for this)."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def _raw_text(text: str) -> None:
    from IPython.display import display_pretty

    display_pretty(text, raw=True)


def _republish(shell: Any, content: Dict[str, Any], engine_id: int) -> None:
    """Show an engine's display here, tagged with its engine (ipyparallel's metadata)."""
    metadata = dict(content.get("metadata") or {})
    metadata["engine"] = engine_id
    shell.display_pub.publish(data=content.get("data", {}), metadata=metadata)


def _method(ar: Any) -> str:
    """ipyparallel's name of the request behind a task: ``execute`` or ``apply``."""
    return "execute" if getattr(ar, "fname", "") in ("execute", "%px") else "apply"


class OutputPrinter:
    """Prints what a call's tasks write and display, once each piece, as it arrives."""

    def __init__(self, ar: AsyncResult) -> None:
        self.ar = ar
        self.records: List[TaskRecord] = list(ar.records)
        self._printed = [0] * len(self.records)  # output pieces shown, per record
        self._ended = [False] * len(self.records)  # outcome shown, per record
        self._trailing_newline = True
        self._last_prefix = ""
        self._errors = 0
        self._lock = threading.Lock()  # the streaming thread and the final call of its owner
        self._shell = _ipython()
        self._in_kernel = getattr(self._shell, "kernel", None) is not None
        self._streamed: Dict[Tuple[int, str], str] = {}  # in a kernel: each record's stream so far

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
                for name, piece in pieces[self._printed[i] : end]:
                    if name == "display":
                        self._show_display(record, piece)
                    elif self._in_kernel:
                        self._update_stream(i, record, name, piece)
                    else:
                        stream = sys.stdout if name == "stdout" else sys.stderr
                        self._display(piece, f"[{name}:{record.engine_id}] ", stream)
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

    def _update_stream(self, i: int, record: TaskRecord, name: str, text: str) -> None:
        """In a kernel: the record's stream as one output, ``[stdout:0] `` and its text so far."""
        from IPython.display import publish_display_data

        key = (i, name)
        update = key in self._streamed
        full = self._streamed.get(key, "") + text
        if "\r" in text:  # a line rewritten in place keeps only its last version (as ipyparallel)
            full = _REWRITTEN.sub("", full)
        self._streamed[key] = full
        publish_display_data(
            {"text/plain": f"[{name}:{record.engine_id}] {full}"},
            transient={"display_id": f"{record.msg_id}-{name}"},
            update=update,
        )

    def _end_line(self) -> None:
        """What comes next starts on a line of its own, not after text that ended without one."""
        if not self._trailing_newline and not self._in_kernel:
            print()
            self._trailing_newline = True
        self._last_prefix = ""  # the next text is labelled again

    def _show_display(self, record: TaskRecord, content: Dict[str, Any]) -> None:
        if self._shell is None:  # displays mean nothing outside IPython (as in ipyparallel)
            return
        self._end_line()
        _raw_text(f"[output:{record.engine_id}]")
        _republish(self._shell, content, record.engine_id)

    def _show_outcome(self, record: TaskRecord) -> None:
        if record.error is not None:
            self._errors += 1
            label = f"[{record.engine_id}:{_method(self.ar)}]"
            if self._errors <= CompositeError.tb_limit:
                lines = record.error.render_traceback()
                if not (lines and lines[0].startswith(label)):
                    lines = [label, *lines]
                self._end_line()
                print("\n".join(lines), file=sys.stderr)
            else:
                print(record.error, file=sys.stderr)
            return
        out = getattr(record.value, "execute_result", None)
        if out is not None:
            self._end_line()
            _show_result(self._shell, record)


def _show_result(shell: Any, record: TaskRecord) -> None:
    """A cell's ``Out[engine:n]``: rich through IPython's display, else as text."""
    if shell is not None:
        from IPython.display import display

        display(record.value)
        return
    out = record.value.execute_result
    print(f"Out[{record.engine_id}:{out.get('execution_count', 0)}]: {out['data'].get('text/plain', '')}")


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
    result without label); in IPython its displays under ``[output:0]`` and each
    ``execute(silent=False)`` result as ``Out[engine:n]`` (rich in Jupyter); outside IPython the
    results as text."""
    single = isinstance(ar.engine_id, int)
    if groupby not in ("type", "engine", "order"):
        raise ValueError(f"groupby must be one of 'type', 'engine', 'order', not {groupby!r}")
    ar.wait()
    shell = _ipython()

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
        if r.done and getattr(r.value, "execute_result", None) is not None:
            _show_result(shell, r)

    def displays(r: TaskRecord, first: int = 0, last: Optional[int] = None) -> None:
        outputs = r.outputs[first:last]
        if shell is None or result_only or not outputs:
            return
        if not single:
            _raw_text(f"[output:{r.engine_id}]")
        for content in outputs:
            _republish(shell, content, r.engine_id)

    if groupby == "engine":
        for r in ar.records:
            stream(r, "stdout", sys.stdout)
            stream(r, "stderr", sys.stderr)
            displays(r)
            result(r)
        return
    for r in ar.records:
        stream(r, "stdout", sys.stdout)
    for r in ar.records:
        stream(r, "stderr", sys.stderr)
    if groupby == "order":  # the first display of every engine, then the second...
        for i in range(max((len(r.outputs) for r in ar.records), default=0)):
            for r in ar.records:
                displays(r, i, i + 1)
    else:
        for r in ar.records:
            displays(r)
    for r in ar.records:
        result(r)
