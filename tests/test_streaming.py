"""Showing output as it arrives: ipyparallel's format (``OutputPrinter``, with stand-in
records) and ``ar.stream_output()`` printing while the caller still waits."""

from __future__ import annotations

import contextlib
import io
import threading
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from conftest import HANG_GUARD
from test_output import print_wait_print

from localpar import Client, RemoteError
from localpar.client.streaming import OutputPrinter
from localpar.wire.execreply import ExecuteReply

pytestmark = pytest.mark.timeout(60)


class Watcher(io.StringIO):
    """A stream that says when `marker` has been written to it."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.seen = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        if self.marker in self.getvalue():
            self.seen.set()
        return n


def record(engine_id: int, *output: Any) -> SimpleNamespace:
    return SimpleNamespace(engine_id=engine_id, output=list(output), done=False, error=None, value=None)


def test_the_format_is_ipyparallels() -> None:
    """A ``[name:engine] `` line when the source changes (none while it stays), a newline
    first if the last text did not end one; then errors and ``Out[e:n]`` as tasks end."""
    zero = record(0, ("stdout", "a"), ("stdout", "b\n"), ("stderr", "e\n"))
    one = record(1, ("stdout", "c"))
    printer = OutputPrinter(SimpleNamespace(records=[zero, one]))  # type: ignore[arg-type]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        printer.print_new()
        zero.output.append(("stdout", "more\n"))
        zero.done, zero.value = True, ExecuteReply(3, {"data": {"text/plain": "42"}, "execution_count": 3})
        one.done, one.error = True, RemoteError("ValueError", "bad", "Traceback...\nValueError: bad")
        printer.print_new()
        printer.print_new()  # nothing new: nothing printed
    assert out.getvalue() == "[stdout:0] \nab\n[stdout:1] \nc\n[stdout:0] \nmore\nOut[0:3]: 42\n"
    assert err.getvalue() == "[stderr:0] \ne\n[1:apply]\nTraceback...\nValueError: bad\n"


def test_a_result_starts_on_a_line_of_its_own() -> None:
    """Text that ended without a newline does not run into the ``Out[e:n]`` after it."""
    zero = record(0, ("stdout", "no newline"))
    printer = OutputPrinter(SimpleNamespace(records=[zero]))  # type: ignore[arg-type]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        zero.done, zero.value = True, ExecuteReply(3, {"data": {"text/plain": "42"}, "execution_count": 3})
        printer.print_new()
    assert out.getvalue() == "[stdout:0] \nno newline\nOut[0:3]: 42\n"


@pytest.fixture(scope="module")
def rc() -> Iterator[Client]:
    with Client(1) as c:
        yield c


def test_stream_output_prints_while_the_caller_waits(rc: Client, tmp_path: Any) -> None:
    """The task waits for a file that is created only once its first print was shown."""
    path = tmp_path / "go"
    ar = rc[0].apply_async(print_wait_print, str(path))
    out, err = Watcher("[stdout:0] \nbefore\n"), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with ar.stream_output():
            assert out.seen.wait(HANG_GUARD)
            path.touch()
            assert ar.get(HANG_GUARD) == "done"
    assert out.getvalue() == "[stdout:0] \nbefore\n[stdout:0] \nafter\n"  # stderr came between
    assert err.getvalue() == "[stderr:0] \nwarn\n"


class LandsOnFlush(io.StringIO):
    """A stdout whose first flush, the end of the printer's first look, is when the collector
    applies the task's last output and completes it: between that look and the end check."""

    def __init__(self, late: SimpleNamespace) -> None:
        super().__init__()
        self.late = late
        self.landed = False

    def flush(self) -> None:
        super().flush()
        if not self.landed:
            self.landed = True
            self.late.output.append(("stdout", "last\n"))
            self.late.done = True


class OneShotResult(SimpleNamespace):
    """An AsyncResult stand-in whose waits never block: a wait whose change has not
    already happened would be a lost wake-up (nothing else will change the records)."""

    def wait_until(self, predicate: Any, timeout: Any) -> bool:
        assert predicate(), "the printer waits for a change that already happened and was not printed"
        return True


@pytest.mark.parametrize("loop", ["stream_until_done", "follow"])
def test_output_that_lands_with_the_end_is_printed(loop: str) -> None:
    """A task's output and completion that arrive after the printer's last look but before its
    check for the end are still printed: %px in Jupyter dropped them (issue 23)."""
    from localpar.client.streaming import stream_until_done

    early, late = record(0, ("stdout", "first\n")), record(1)
    early.done = True
    ar = OneShotResult(records=[early, late])
    out = LandsOnFlush(late)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        if loop == "follow":
            OutputPrinter(ar).follow(threading.Event())  # type: ignore[arg-type]
        else:
            stream_until_done(ar)  # type: ignore[arg-type]
    assert out.landed
    assert out.getvalue() == "[stdout:0] \nfirst\n[stdout:1] \nlast\n"
