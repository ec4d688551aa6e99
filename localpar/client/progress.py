"""Progress display for ``AsyncResult.wait_interactive()``.

Three renderers share one polling loop: with tqdm installed, ``tqdm.auto`` bars
(a widget in a notebook that has ipywidgets, text on a terminal), one for
finished/total tasks plus one per task that reports its own progress with
``report_progress(done, total)``; otherwise a single status line, rewritten in
place with ``\\r`` on a terminal, or in a Jupyter kernel a plain-text display
updated in place (no widgets, no terminal control codes)::

      3/8 tasks done | engine 0: 40% | engine 1: 70% | 1.2 s

A map counts its items, as ipyparallel's does (``ar.progress`` of ``len(ar)``).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:
    from .asyncresult import AsyncResult

MAX_TASK_BARS = 16
"""Per-task bars shown at most (a long load-balanced map would otherwise fill the screen)."""


def _load_tqdm() -> Any:
    """``tqdm.auto.tqdm`` (notebook-aware), or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, where a display can be updated in place (tqdm's own test)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:
        return False


def _has_widgets() -> bool:
    """Whether ipywidgets, which tqdm's notebook bars need, can be imported."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _tasks_done(ar: AsyncResult) -> int:
    """``ar.progress``, of ``len(ar)``: finished tasks, or a map's computed items (as ipyparallel
    counts them: a load-balanced map of 1,000 items in 143 tasks shows 1,000)."""
    ar.ready()
    return ar.progress


def task_labels(ar: AsyncResult) -> List[str]:
    """``engine i`` when each task has its own engine, else ``task k`` (e.g. a load-balanced map)."""
    ids = [r.engine_id for r in ar.records]
    if all(i >= 0 for i in ids) and len(set(ids)) == len(ids):
        return [f"engine {i}" for i in ids]
    return [f"task {k}" for k in range(len(ids))]


def status_line(ar: AsyncResult) -> str:
    """The one-line text view: finished/total, each running task's reported share, seconds since submission."""
    parts = [f"{_tasks_done(ar):>3}/{len(ar)} tasks done"]
    finished = [r.done for r in ar.records]
    for label, progress, done in zip(task_labels(ar), ar.task_progress, finished):
        if progress is not None and not done:
            step, total = progress
            parts.append(f"{label}: {100 * min(step, total) // total}%")
    parts.append(f"{ar.elapsed:.1f} s")
    return " | ".join(parts)


def wait_interactive(
    ar: AsyncResult, interval: float = 0.1, timeout: Optional[float] = None, widget: Optional[bool] = None
) -> None:
    """Wait for `ar` while showing its progress; raise ``TimeoutError`` after `timeout` seconds.

    `widget`: None uses tqdm when installed (in Jupyter, when ipywidgets is too), True
    requires it, False forces the status line.
    """
    notebook = _in_notebook()
    if notebook and widget is not False and not _has_widgets():
        # tqdm.auto would warn (TqdmWarning) and fall back to terminal bars full of control codes.
        if widget:
            raise ImportError("wait_interactive(widget=True) in Jupyter needs ipywidgets: pip install ipywidgets")
        widget = False
    tqdm = None if widget is False else _load_tqdm()
    if widget and tqdm is None:
        raise ImportError("wait_interactive(widget=True) needs tqdm: pip install tqdm")
    display: _Display
    if tqdm is not None:
        display = _Bars(ar, tqdm)
    else:
        display = _NotebookLine(ar) if notebook else _TextLine(ar)
    deadline = None if timeout is None else time.monotonic() + timeout
    finished = False
    try:
        while True:
            finished = ar.ready()
            display.update()
            if finished:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                done = f"{_tasks_done(ar)}/{len(ar)} tasks done"
                raise TimeoutError(f"{ar!r} not ready after {timeout} s ({done})")
            ar.wait(interval if remaining is None else min(interval, remaining))
    finally:
        display.close(finished)


class _Display:
    def __init__(self, ar: AsyncResult) -> None:
        self.ar = ar

    def update(self) -> None:
        raise NotImplementedError

    def close(self, finished: bool) -> None:
        raise NotImplementedError


class _TextLine(_Display):
    """One stdout line rewritten in place; a newline once the wait ends."""

    def __init__(self, ar: AsyncResult) -> None:
        super().__init__(ar)
        self.width = 0

    def update(self) -> None:
        line = status_line(self.ar)
        pad = max(0, self.width - len(line))  # blank out what a longer previous line left
        self.width = len(line) + pad  # what the terminal shows now, blanks included
        sys.stdout.write("\r" + line + " " * pad)
        sys.stdout.flush()

    def close(self, finished: bool) -> None:
        sys.stdout.write("\n")
        sys.stdout.flush()


class _NotebookLine(_Display):
    """The status line as one plain-text display output, updated in place by its display id."""

    def __init__(self, ar: AsyncResult) -> None:
        from IPython.display import display

        super().__init__(ar)
        self.shown = status_line(ar).strip()  # no padding: nothing of an older line to blank out
        self.handle = display({"text/plain": self.shown}, raw=True, display_id=True)

    def update(self) -> None:
        line = status_line(self.ar).strip()
        if line != self.shown:
            self.handle.update({"text/plain": line}, raw=True)
            self.shown = line

    def close(self, finished: bool) -> None:
        pass  # the last update stays as the cell's output


class _Bars(_Display):
    """A tqdm bar for the tasks, plus one per task once it reports its own progress."""

    def __init__(self, ar: AsyncResult, tqdm: Any) -> None:
        super().__init__(ar)
        self.tqdm = tqdm
        self.main = tqdm(total=len(ar), desc=ar.fname, unit="tasks", position=0, leave=True)
        self.tasks: Dict[int, Any] = {}

    def update(self) -> None:
        done = _tasks_done(self.ar)
        if done > self.main.n:
            self.main.update(done - self.main.n)
        labels = task_labels(self.ar)
        finished = [r.done for r in self.ar.records]
        for index, progress in enumerate(self.ar.task_progress):
            if progress is None:
                continue
            step, total = progress
            target = total if finished[index] else min(step, total)
            bar = self.tasks.get(index)
            if bar is None:
                if len(self.tasks) >= MAX_TASK_BARS:
                    continue
                position = len(self.tasks) + 1
                bar = self.tqdm(total=total, initial=target, desc=f"  {labels[index]}", position=position, leave=True)
                self.tasks[index] = bar
            if bar.total != total:
                bar.total = total
            if target != bar.n:
                bar.n = target
                bar.refresh()

    def close(self, finished: bool) -> None:
        for bar in self.tasks.values():
            bar.close()
        self.main.close()
