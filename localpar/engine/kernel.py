"""IPython on the engine, when it is importable there: the shell that runs cells.

    execute(code), run(file), %px ──► namespace.execute_interactive ──► run_cell: an
                                      EngineShell (IPython's InteractiveShell) made at the
                                      first cell, on the engine's namespace: magics,
                                      !shell, the display hook, %matplotlib inline
    display(x), a shown inline figure ──► EnginePublisher ──► the engine's TaskStream ──►
                                      one Display frame, after the text printed before it
                                      (see ``output``): an output of the task
    the cell's last expression ──► EngineDisplayHook ──► its execute_result (mime bundle)

Light by default: this module imports no IPython at import time.  The shell is
made by the first cell an engine runs, or when task code imports IPython itself
(`watch_imports`: a meta-path finder that makes the shell once the ``IPython``
package has loaded, so that ``display()`` in a function sent by ``apply`` is a
display, not a print; an engine forked with IPython loaded makes it at its first
cell).  An engine that only runs ``apply`` work never loads
IPython.  Without IPython (`available` is False), ``namespace`` runs cells as
plain Python.

A failed cell raises `CellError`, which carries IPython's own traceback text:
it starts at the cell (``Cell In[3], line 1``), with no frame of localpar's.

Ownership: the shell is made once, under `_lock` (the main thread runs cells;
an import of IPython may happen in any thread of a task, and making the shell
imports IPython: the import hook passes when the lock is taken); cells run in the
engine's main thread, one at a time.  A display from another thread of the task
goes through the TaskStream, whose TaskOutput lock orders it with the text.
"""

from __future__ import annotations

import base64
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import types
from typing import Any, Dict, Optional, Sequence, Tuple

from ..wire.execreply import ExecuteReply

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))
_lock = threading.Lock()
_shell: Any = None  # the EngineShell, once made
_available: Optional[bool] = None  # whether a real IPython is importable here (looked up once)
_namespace: Dict[str, Any] = {}  # the engine's namespace, the shell's user_ns (set by `watch_imports`)
_stream: Any = None  # the engine's TaskStream for stdout: displays go through it, in order with text


class CellError(Exception):
    """A cell failed: the remote type name, message and traceback, as IPython drew them."""

    def __init__(self, ename: str, evalue: str, traceback: str) -> None:
        super().__init__(ename, evalue, traceback)
        self.ename, self.evalue, self.traceback = ename, evalue, traceback

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}"


def available() -> bool:
    """Whether IPython can be imported in this engine (not the stand-in package ``compat``
    serves for ``IPython.kernel.zmq.datapub`` when IPython is missing)."""
    global _available
    if _available is None:
        module = sys.modules.get("IPython")
        if module is not None:
            _available = getattr(module, "__file__", None) is not None
        else:
            _available = _real_spec("IPython", None, skip=None) is not None
    return _available


def _real_spec(
    fullname: str, path: Optional[Sequence[str]], skip: Optional[object]
) -> Optional[importlib.machinery.ModuleSpec]:
    """The spec the other finders give for `fullname`, passing over `skip` and ``compat``'s."""
    from .compat import DatapubFinder

    for finder in list(sys.meta_path):
        if finder is skip or isinstance(finder, DatapubFinder) or not hasattr(finder, "find_spec"):
            continue
        try:
            spec = finder.find_spec(fullname, path)
        except ImportError:  # a finder that refuses it: the import would fail the same way
            return None
        except ValueError:
            continue
        if spec is not None:
            return spec
    return None


def shell() -> Any:
    """The engine's IPython shell, made at the first call (IPython is imported then)."""
    global _shell
    if _shell is None:
        with _lock:
            if _shell is None:
                _shell = _make_shell()
    return _shell


def run_cell(code: str, silent: bool) -> ExecuteReply:
    """Run `code` as a notebook cell; raises `CellError` if it fails.  `silent`: no
    execute_result and no history, and the execution count stays (as ipykernel does)."""
    sh = shell()
    sh.cell_result = None
    sh.cell_error = None
    result = sh.run_cell(code, store_history=not silent, silent=silent)
    if not result.success:
        error = sh.cell_error
        if error is None:  # failed without a traceback drawn (should not happen): say what there is
            exc = result.error_before_exec or result.error_in_exec
            error = (type(exc).__name__, str(exc), f"{type(exc).__name__}: {exc}")
        raise CellError(*error)
    count = sh.execution_count - 1
    return ExecuteReply(count, None if silent else sh.cell_result, "")


def reset_namespace() -> None:
    """The namespace was cleared (``clear``): put back what the shell keeps in it."""
    if _shell is not None:
        _shell.init_user_ns()


def publish(content: Dict[str, Any]) -> None:
    """Send a display of the running task to the client, in order with its output (a display
    that is not the task's, e.g. in a process it forked, prints its text: see ``output``)."""
    if _stream is None:
        print(content.get("data", {}).get("text/plain", ""))
        return
    _stream.display(content)


def clean(value: Any) -> Any:
    """`value` as JSON has it: bytes as base64 text (as Jupyter keeps images), tuples as lists."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return repr(value)


def _make_shell() -> Any:
    """IPython's InteractiveShell on the engine's namespace, drawing no prompt and printing
    no result: its displays, results and errors go to the task instead."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class EnginePublisher(DisplayPublisher):
        """``display()`` on the engine: an output of the running task."""

        def publish(
            self,
            data: Dict[str, Any],
            metadata: Optional[Dict[str, Any]] = None,
            source: Any = None,
            *,
            transient: Optional[Dict[str, Any]] = None,
            update: bool = False,
            **kwargs: Any,
        ) -> None:
            content = {"data": clean(data), "metadata": clean(metadata or {}), "transient": clean(transient or {})}
            if update:
                content["update"] = True
            publish(content)

        def clear_output(self, wait: bool = False) -> None:
            """Outputs are kept by the client: nothing to clear here."""

    class EngineDisplayHook(DisplayHook):
        """The value of a cell's last expression: kept as the cell's execute_result."""

        def start_displayhook(self) -> None:
            pass

        def write_output_prompt(self) -> None:
            pass

        def write_format_data(self, format_dict: Dict[str, Any], md_dict: Optional[Dict[str, Any]] = None) -> None:
            self.shell.cell_result = {  # type: ignore[union-attr]
                "data": clean(format_dict),
                "metadata": clean(md_dict or {}),
                "execution_count": self.prompt_count,
            }

        def finish_displayhook(self) -> None:
            pass

    class EngineShell(InteractiveShell):
        """The engine's shell: a failed cell's traceback is kept for its `CellError`."""

        cell_result: Optional[Dict[str, Any]] = None
        cell_error: Optional[Tuple[str, str, str]] = None

        def _showtraceback(self, etype: Any, evalue: Any, stb: Any) -> None:
            # No frame of localpar's engine (an interrupt is raised in its signal handler).
            stb = [entry for entry in stb if _ENGINE_DIR not in entry]
            self.cell_error = (etype.__name__, str(evalue), "\n".join(stb))

        def enable_gui(self, gui: Any = None) -> None:
            """No event loop runs on an engine: figures are shown inline (``%matplotlib inline``)."""

    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # no sqlite file shared by every engine
    config.InteractiveShell.colors = "NoColor"  # plain text: read in logs, terminals and notebooks alike
    config.InteractiveShell.autoindent = False
    main = sys.modules.get("__main__")
    InteractiveShell.clear_instance()  # one a forked engine inherited from an IPython client
    made = EngineShell.instance(
        config=config,
        user_ns=_namespace,
        display_pub_class=EnginePublisher,
        displayhook_class=EngineDisplayHook,
    )
    if main is not None:
        sys.modules["__main__"] = main  # the shell put its namespace module there: keep the engine's
    return made


class _MakeShellAfter(importlib.abc.Loader):
    """IPython's own loader, then the engine's shell (see `watch_imports`)."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__spec__ is not None:
            module.__spec__.loader = self.inner
        module.__loader__ = self.inner
        self.inner.exec_module(module)
        _make_shell_now()


def _make_shell_now() -> None:
    """IPython has just loaded: make the shell, unless it is being made (this import is
    then the maker's own, or another thread's that will have it soon)."""
    global _shell
    if not _lock.acquire(blocking=False):
        return
    try:
        if _shell is None:
            _shell = _make_shell()
    except Exception as exc:  # the task's import must not fail for it: display() then prints
        print(f"localpar: no IPython shell on this engine ({type(exc).__name__}: {exc})", file=sys.stderr)
    finally:
        _lock.release()


class IPythonWatch(importlib.abc.MetaPathFinder):
    """Makes the engine's shell when task code first imports IPython."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[types.ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != "IPython" or _shell is not None:
            return None
        spec = _real_spec(fullname, path, skip=self)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _MakeShellAfter(spec.loader)
        return spec


def watch_imports(namespace: Dict[str, Any], stream: Any) -> None:
    """At engine start, given its namespace and its stdout TaskStream: the shell is made when
    IPython is first imported by a task, or at the first cell.  An engine forked from a
    process that had IPython's shell loaded drops the shell it inherited (it is the
    client's) and makes its own at the first cell: made at start, it would cost every
    engine start milliseconds; until then a ``display()`` prints its text."""
    global _available, _namespace, _stream
    _namespace, _stream = namespace, stream
    inherited = sys.modules.get("IPython.core.interactiveshell")
    if inherited is not None:
        _available = True
        inherited.InteractiveShell.clear_instance()
        return
    if not any(isinstance(f, IPythonWatch) for f in sys.meta_path):
        sys.meta_path.insert(0, IPythonWatch())
