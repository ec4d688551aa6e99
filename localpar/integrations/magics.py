"""IPython's parallel magics on a localpar view: ``%px``, ``%%px``, ``%pxresult``,
``%autopx``, ``%pxconfig`` (each with an optional suffix), as ipyparallel registers them.

They are registered by ``view.activate(suffix)`` / ``client.activate(targets, suffix)``,
and for a default blocking view on all engines when a `Client` is made inside IPython.
Code runs on the engines through ``view.execute(cell, silent=False)``: the value of a
cell's last expression comes back as ``Out[engine:n]``, stdout/stderr labelled by engine.

With ``--stream`` (the default, as in ipyparallel unless ``IPP_NONINTERACTIVE`` is set),
a blocking ``%px`` prints each engine's output while its task runs, labelled
``[stdout:0]`` as in ipyparallel (see ``streaming``), each error as it comes, and then
raises ``AlreadyDisplayedError`` (only the count of errors) rather than showing them again.
``--no-stream`` prints everything at the end, grouped by ``--group-outputs``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, no_var_expand

from ..client.streaming import stream_until_done
from ..errors import AlreadyDisplayedError, CompositeError

if TYPE_CHECKING:
    from ..client.asyncresult import AsyncResult
    from ..client.interface import ClientAPI as Client
    from ..client.interface import ViewAPI as DirectView


def _execution_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``%pxconfig`` and ``%%px`` that choose how code runs."""
    options: List[Tuple[Tuple[str, ...], Dict[str, Any]]] = [
        (("-b", "--block"), dict(action="store_const", const=True, dest="block", help="wait for the result")),
        (("-a", "--noblock"), dict(action="store_const", const=False, dest="block", help="return an AsyncResult")),
        (("--stream",), dict(action="store_const", const=True, dest="stream", help="print output as it comes")),
        (("--no-stream",), dict(action="store_const", const=False, dest="stream", help="print output at the end")),
        (("-t", "--targets"), dict(type=str, help="engines to run on: 'all', an id, a list or a slice")),
        (("--verbose",), dict(action="store_const", const=True, dest="set_verbose", help="say where code runs")),
        (("--no-verbose",), dict(action="store_const", const=False, dest="set_verbose", help="be quiet")),
        (("--progress-after",), dict(dest="progress_after", type=float, default=None, help="ignored")),
        (
            ("--signal-on-interrupt",),
            dict(dest="signal_on_interrupt", type=str, default=None, help="signal sent to the engines on Ctrl-C"),
        ),
    ]
    for flags, kwargs in reversed(options):
        f = magic_arguments.argument(*flags, **kwargs)(f)
    return f


def _output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``%pxresult`` and ``%%px`` that choose how results are shown."""
    options: List[Tuple[Tuple[str, ...], Dict[str, Any]]] = [
        (("-r",), dict(action="store_const", dest="groupby", const="order", default="type", help="group in order")),
        (("-e",), dict(action="store_const", dest="groupby", const="engine", default="type", help="group by engine")),
        (
            ("--group-outputs",),
            dict(dest="groupby", type=str, choices=["engine", "order", "type"], default="type", help="grouping"),
        ),
        (("-o", "--out"), dict(dest="save_name", type=str, help="store the AsyncResult under this name")),
    ]
    for flags, kwargs in reversed(options):
        f = magic_arguments.argument(*flags, **kwargs)(f)
    return f


class ParallelMagics(Magics):
    """The parallel magics of one view (``%px{suffix}`` and friends)."""

    registered = True  # the magic table is built per instance (one per view and suffix)

    def __init__(self, shell: Any, view: DirectView, suffix: str = "") -> None:
        self.view = view
        self.suffix = suffix
        self.verbose = False
        self.stream_output = os.getenv("IPP_NONINTERACTIVE", "") in {"", "0"}
        self.signal_on_interrupt: Union[str, int] = "SIGINT"
        self.last_result: Optional[AsyncResult] = None
        self._autopx = False
        self._px_cell = ""
        px = "px" + suffix
        line: Dict[str, Any] = {px: self.px, "pxresult" + suffix: self.result, "pxconfig" + suffix: self.pxconfig}
        line["auto" + px] = self.autopx
        if not suffix:
            line["result"] = self.result
        self.magics = {"line": line, "cell": {px: self.cell_px}}
        super().__init__(shell=shell)

    @property
    def _ip(self) -> Any:
        return self.shell

    # -- options -----------------------------------------------------------------------------
    def _targets(self, text: str) -> Any:
        text = text.strip()
        if ":" in text:
            return eval(f"__ids[{text}]", {"__ids": self.view.client.ids})
        if text == "all":
            return "all"
        return eval(text, {})

    @staticmethod
    def _signal(text: str) -> Union[str, int]:
        return int(text) if text.isdigit() else text

    @magic_arguments.magic_arguments()
    @_execution_options
    def pxconfig(self, line: str) -> None:
        """Set the defaults of the %px magics: targets, blocking, verbosity, streaming."""
        args = magic_arguments.parse_argstring(self.pxconfig, line)
        if args.targets:
            self.view.targets = self._targets(args.targets)
        if args.block is not None:
            self.view.block = args.block
        if args.set_verbose is not None:
            self.verbose = args.set_verbose
        if args.stream is not None:
            self.stream_output = args.stream
        if args.signal_on_interrupt is not None:
            self.signal_on_interrupt = self._signal(args.signal_on_interrupt)

    @magic_arguments.magic_arguments()
    @_output_options
    def result(self, line: str = "") -> None:
        """Show the outputs and results of the last %px call (e.g. a non-blocking one)."""
        args = magic_arguments.parse_argstring(self.result, line)
        if self.last_result is None:
            raise UsageError("No previous %px result: run %px first")
        if args.save_name:
            self._ip.user_ns[args.save_name] = self.last_result
            return
        try:
            self.last_result.get()
        finally:
            self.last_result.display_outputs(groupby=args.groupby)

    # -- running code ------------------------------------------------------------------------
    @no_var_expand
    def px(self, line: str = "") -> Any:
        """Run one line of Python on the view's engines: ``%px a = os.getpid()``."""
        return self.parallel_execute(line)

    def parallel_execute(
        self,
        cell: str,
        block: Optional[bool] = None,
        groupby: str = "type",
        save_name: Optional[str] = None,
        signal_on_interrupt: Optional[Union[str, int]] = None,
        stream_output: Optional[bool] = None,
    ) -> Any:
        block = self.view.block if block is None else block
        stream = self.stream_output if stream_output is None else stream_output
        if self.verbose:
            targets: Any = self.view.targets
            long = isinstance(targets, list) and len(targets) > 10
            shown = f"{targets[:4]}...{targets[-4:]}" if long else targets
            print(f"{'Parallel' if block else 'Async parallel'} execution on engine(s): {shown}")
        ar = self.view.execute(cell, silent=False, block=False)
        ar.fname = "%px"
        self.last_result = ar
        if save_name:
            self._ip.user_ns[save_name] = ar
        if not block:
            return ar
        try:
            if stream:
                stream_until_done(ar)
            else:
                ar.wait()
        except KeyboardInterrupt:  # Ctrl-C: signal the engines, show what finished, do not raise
            sig = self.signal_on_interrupt if signal_on_interrupt is None else signal_on_interrupt
            print(f"Received Keyboard Interrupt. Sending signal {sig} to engines...", file=sys.stderr)
            self._send_signal(sig)
            if ar.wait(1) and not stream:
                ar.display_outputs(groupby)
            return None
        if not stream:
            ar.display_outputs(groupby)
        try:
            ar.get()
        except CompositeError as e:
            if stream:  # each error was printed as it came
                raise AlreadyDisplayedError(e) from None
            raise
        return None

    def _send_signal(self, sig: Union[str, int]) -> None:
        signum = getattr(signal, sig) if isinstance(sig, str) else int(sig)
        if signum == signal.SIGINT:
            self.view.interrupt()
        elif signum:
            self.view.client.send_signal(signum, self.view.targets)

    @magic_arguments.magic_arguments()
    @_execution_options
    @_output_options
    @magic_arguments.argument("--local", action="store_const", const=True, dest="local", help="also run locally")
    def cell_px(self, line: str = "", cell: Optional[str] = None) -> Any:
        """Run the cell on the view's engines (``%%px --targets 0 --noblock``...)."""
        args = magic_arguments.parse_argstring(self.cell_px, line)
        saved = self.view.targets
        if args.targets:
            self.view.targets = self._targets(args.targets)
        signal_on_interrupt = None if args.signal_on_interrupt is None else self._signal(args.signal_on_interrupt)
        block = self.view.block if args.block is None else args.block
        try:
            ar = self.parallel_execute(
                cell or "",
                block=False if args.local else block,
                groupby=args.groupby,
                save_name=args.save_name,
                signal_on_interrupt=signal_on_interrupt,
                stream_output=args.stream,
            )
        finally:
            self.view.targets = saved
        if args.local:
            self._ip.run_cell(cell)
            if block:
                try:
                    ar.get()
                finally:
                    ar.display_outputs(args.groupby)
                return None
        return ar

    # -- %autopx -----------------------------------------------------------------------------
    def autopx(self, line: str = "") -> None:
        """Toggle sending every cell to the engines (``%autopx`` again turns it off)."""
        if self._autopx:
            self._disable_autopx()
        else:
            self._enable_autopx()

    def _enable_autopx(self) -> None:
        shell: Any = self.shell
        self._original_run_cell = shell.run_cell
        self._original_run_ast_nodes = shell.run_ast_nodes
        shell.run_cell = self._pxrun_cell
        run_nodes: Any = self._pxrun_nodes
        if _is_coroutine_function(self._original_run_ast_nodes):

            async def run_nodes(*args: Any, **kwargs: Any) -> bool:
                return self._pxrun_nodes(*args, **kwargs)

        shell.run_ast_nodes = run_nodes
        self._autopx = True
        print("%autopx enabled")

    def _disable_autopx(self) -> None:
        if self._autopx:
            self._ip.run_cell = self._original_run_cell
            self._ip.run_ast_nodes = self._original_run_ast_nodes
            self._autopx = False
            print("%autopx disabled")

    def _pxrun_cell(self, raw_cell: str, *args: Any, **kwargs: Any) -> Any:
        self._px_cell = raw_cell
        return self._original_run_cell(raw_cell, *args, **kwargs)

    def _pxrun_nodes(self, *args: Any, **kwargs: Any) -> bool:
        """Run the raw cell on the engines instead of its parsed nodes here."""
        cell = self._px_cell
        if re.search(rf"^\s*%autopx{re.escape(self.suffix)}\b", cell):
            self._disable_autopx()
            return False
        try:
            self.parallel_execute(cell)
        except Exception:
            self._ip.showtraceback()
            return True
        return False


def _is_coroutine_function(f: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(f)


def register(view: DirectView, suffix: str = "") -> Optional[ParallelMagics]:
    """Register the magics of `view` in the running IPython (nothing outside IPython)."""
    shell = _shell()
    if shell is None:
        return None
    magics = ParallelMagics(shell, view, suffix)
    shell.register_magics(magics)
    return magics


def _shell() -> Any:
    if "IPython" not in sys.modules:  # never import IPython for a plain script
        return None
    from IPython import get_ipython

    return get_ipython()


def activate_default(client: Client) -> None:
    """When a Client is made inside IPython: ``%px`` runs on all its engines, unless a live
    client's view already has ``%px``."""
    shell = _shell()
    if shell is None:
        return
    current = shell.magics_manager.magics["line"].get("px")
    owner = getattr(current, "__self__", None)
    if isinstance(owner, ParallelMagics) and not owner.view.client.closed:
        return
    client.activate()
