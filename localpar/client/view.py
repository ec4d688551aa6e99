"""Views: which engines a call goes to, and how (ipyparallel's DirectView and LoadBalancedView)."""

from __future__ import annotations

import builtins
import contextlib
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import not_picklable
from ..wire.ops import EngineOp
from ..wire.reference import Reference, contains_reference
from .asyncresult import AsyncResult
from .mapresult import AsyncMapResult, JoinedResult, UnorderedMapResult

if TYPE_CHECKING:
    from .client import Client

Targets = Union[None, str, int, Sequence[int]]

# What the views run on engines: functions of localpar.engine.namespace, sent by name (see wire.ops).
_call_with_references = EngineOp("call_with_references")
_push = EngineOp("push")
_pull = EngineOp("pull")
_execute_interactive = EngineOp("execute_interactive")
_map_chunk_with_references = EngineOp("map_chunk_with_references")
_map_chunk = EngineOp("map_chunk")


def _split(n_items: int, n_parts: int) -> List[Tuple[int, int]]:
    """Contiguous (start, stop) ranges, as even as possible, in order."""
    base, extra = divmod(n_items, n_parts)
    bounds, start = [], 0
    for i in range(n_parts):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class View:
    """What both views share: the client, the default blocking mode, waiting."""

    def __init__(self, client: Client, targets: Targets) -> None:
        self.client = client
        self._targets = targets
        self.block = False

    @property
    def targets(self) -> Targets:
        return self._targets

    @targets.setter
    def targets(self, targets: Targets) -> None:
        self._targets = self.client.normalize_targets(targets)

    def __reduce__(self) -> Any:
        raise not_picklable(self, "it belongs to its Client, which lives in this process only")

    def __repr__(self) -> str:
        text = str(self._targets)
        if len(text) > 16:
            text = text[:12] + "...]"
        return f"<{type(self).__name__} {text}>"

    def __len__(self) -> int:
        return len(self._resolved())

    def _resolved(self) -> List[int]:
        return self.client.resolve_targets(self._targets)

    def _result(self, ar: AsyncResult, block: Optional[bool]) -> Any:
        return ar.get() if (self.block if block is None else block) else ar

    @contextlib.contextmanager
    def temp_flags(self, **flags: Any) -> Iterator[None]:
        """Change flags (``block``) for the duration of a ``with`` block."""
        saved = {k: getattr(self, k) for k in flags}
        self.set_flags(**flags)
        try:
            yield
        finally:
            self.set_flags(**saved)

    def set_flags(self, **flags: Any) -> None:
        for key, value in flags.items():
            if key not in ("block", "targets"):
                raise KeyError(f"unknown flag {key!r}")
            setattr(self, key, value)

    def apply(self, f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``f(*args, **kwargs)``; blocks if ``view.block``, else returns an AsyncResult."""
        return self._result(self.apply_async(f, *args, **kwargs), None)

    def apply_sync(self, f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call and wait for the result."""
        return self.apply_async(f, *args, **kwargs).get()

    def apply_async(self, f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult:
        raise NotImplementedError

    def map(
        self, f: Callable[..., Any], *sequences: Sequence[Any], block: Optional[bool] = None, **options: Any
    ) -> Any:
        """Like builtin map, in parallel; honours ``block`` like ``apply``.

        ``return_exceptions=True`` puts each failed task's error in place of its results.
        """
        return self._result(self.map_async(f, *sequences, **options), block)

    def map_sync(self, f: Callable[..., Any], *sequences: Sequence[Any], **options: Any) -> List[Any]:
        return self.map_async(f, *sequences, **options).get()

    def map_async(self, f: Callable[..., Any], *sequences: Sequence[Any], **options: Any) -> AsyncMapResult:
        raise NotImplementedError

    def wait(self, jobs: Any = None, timeout: Optional[float] = -1) -> bool:
        return self.client.wait(jobs, timeout)

    def abort(self, jobs: Any = None, targets: Targets = None, block: Optional[bool] = None) -> None:
        """Drop tasks not yet started: `jobs` (default: all outstanding) on `targets` (default: this view's)."""
        self.client.abort(jobs, self._targets if targets is None else targets)

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt inside the tasks running on this view's engines."""
        self.client.interrupt(self._targets)

    def remote(self, block: Optional[bool] = None, **flags: Any) -> Callable[[Callable[..., Any]], RemoteFunction]:
        """Decorator: calling the function runs it on this view."""
        return lambda f: RemoteFunction(self, f, block, **flags)

    def parallel(
        self, dist: str = "b", block: Optional[bool] = None, **flags: Any
    ) -> Callable[[Callable[..., Any]], ParallelFunction]:
        """Decorator: calling the function maps it over its sequence arguments on this view.

        `dist` is ipyparallel's partitioning; only ``'b'`` (contiguous blocks) exists here.
        """
        _check_dist(dist)
        return lambda f: ParallelFunction(self, f, block, **flags)

    @property
    def executor(self) -> Any:
        """A ``concurrent.futures.Executor`` running on this view (``submit`` is ``apply_async``)."""
        from ..integrations.executor import ViewExecutor

        return ViewExecutor(self)

    def register_joblib_backend(self, name: str = "ipyparallel", make_default: bool = False) -> None:
        """Register this view as joblib's parallel backend `name` (needs joblib)."""
        from ..integrations.joblib_backend import register

        register(self, name, make_default)


def _check_dist(dist: str) -> None:
    if dist != "b":
        raise NotImplementedError(f"dist={dist!r}: localpar partitions in contiguous blocks only (dist='b')")


def _with_references(call: Tuple[Any, Tuple[Any, ...], Dict[str, Any]]) -> Tuple[Any, Tuple[Any, ...], Dict[str, Any]]:
    """A call whose `Reference` arguments (or function) are looked up in the engine's namespace."""
    if Reference.used and contains_reference(call):
        return (_call_with_references, call, {})
    return call


def _sequences(sequences: Tuple[Sequence[Any], ...]) -> List[Sequence[Any]]:
    if not sequences:
        raise TypeError("map needs at least one sequence")
    seqs = [s if hasattr(s, "__getitem__") and hasattr(s, "__len__") else list(s) for s in sequences]
    shortest = min(len(s) for s in seqs)
    return [s if len(s) == shortest else s[:shortest] for s in seqs]  # as builtin map: zip to the shortest


class DirectView(View):
    """Runs each call on every target engine, in submission order per engine."""

    def __init__(self, client: Client, targets: Targets = "all") -> None:
        super().__init__(client, targets)

    def apply_async(self, f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult:
        """Run ``f(*args, **kwargs)`` on every target; never blocks."""
        call = _with_references((f, args, kwargs))
        single = isinstance(self._targets, int)
        fname = getattr(f, "__name__", "f")
        return self.client.send_calls([(i, call) for i in self._resolved()], fname, single)

    def map_async(
        self, f: Callable[..., Any], *sequences: Sequence[Any], return_exceptions: bool = False, **options: Any
    ) -> AsyncMapResult:
        """Split the sequences into one contiguous chunk per target; results in order."""
        options.pop("label", None)  # ipyparallel's task label: accepted, not recorded
        if options:
            raise TypeError(f"unexpected options for DirectView.map: {sorted(options)}")
        seqs = _sequences(sequences)
        targets = self._resolved()
        bounds = _split(len(seqs[0]), len(targets))
        ar = AsyncMapResult(self.client, getattr(f, "__name__", "f"), [b - a for a, b in bounds])
        ar.return_exceptions = return_exceptions
        chunk = _map_chunk_function(f, seqs)
        calls: List[Tuple[int, Any]] = [
            (engine, (chunk, (f, *[s[a:b] for s in seqs]), {}))
            for engine, (a, b) in zip(targets, bounds)
        ]  # fmt: skip
        self.client.send_calls(calls, ar.fname, ar=ar)
        return ar

    # -- the engine namespace ----------------------------------------------------------------
    def _on(self, targets: Targets) -> DirectView:
        """This view, or one on `targets` for a single call (ipyparallel's ``targets=`` argument)."""
        if targets is None:
            return self
        view = DirectView(self.client, self.client.normalize_targets(targets))
        view.block = self.block
        return view

    def push(
        self, ns: Dict[str, Any], targets: Targets = None, block: Optional[bool] = None, track: Optional[bool] = None
    ) -> Any:
        """Update each engine's namespace with `ns`.

        Functions defined in ``__main__`` among the values get the engine namespace as their
        globals, so they see the names pushed beside them.
        """
        return self._result(self._on(targets).apply_async(_push, ns), block)

    def update(self, ns: Dict[str, Any]) -> Any:
        """``push(ns)`` (ipyparallel's alias)."""
        return self.push(ns)

    def pull(self, names: Union[str, Sequence[str]], targets: Targets = None, block: Optional[bool] = None) -> Any:
        """Get name(s) from each engine's namespace (``'a.b'`` reads an attribute)."""
        return self._result(self._on(targets).apply_async(_pull, names), block)

    def get(self, names: Union[str, Sequence[str]]) -> Any:
        """``pull(names, block=True)`` (ipyparallel's alias)."""
        return self.pull(names, block=True)

    def clear(self, targets: Targets = None, block: Optional[bool] = None) -> Any:
        """Empty the namespaces of this view's engines (or of `targets`)."""
        return self.client.clear(self._targets if targets is None else targets, self.block if block is None else block)

    def __setitem__(self, name: str, value: Any) -> None:
        self.push({name: value}, block=True)

    def __getitem__(self, name: str) -> Any:
        return self.pull(name, block=True)

    def execute(
        self,
        code: str,
        silent: bool = True,
        targets: Targets = None,
        block: Optional[bool] = None,
        label: Optional[str] = None,
    ) -> Any:
        """Run `code` on each engine as a notebook cell, as ipyparallel does: through IPython
        when the engines have it (magics, ``!shell``, ``display()``), else as plain Python.

        Returns the AsyncResult (with ``block=True`` once finished, raising the engines'
        errors); its values are `ExecuteReply` objects.  With ``silent=False`` the value of a
        final expression is each reply's result (``ar.execute_result``); displays are
        ``ar.outputs``.  `label` (ipyparallel's task label) is accepted and not recorded.
        """
        ar = self._on(targets).apply_async(_execute_interactive, code, "<execute>", silent)
        ar.fname = "execute"
        if self.block if block is None else block:
            ar.get()
        return ar

    def run(
        self, filename: str, targets: Targets = None, block: Optional[bool] = None, label: Optional[str] = None
    ) -> Any:
        """Run a local Python file on each engine, as `execute` runs its text."""
        with open(filename) as f:
            code = f.read() + "\n"  # a trailing indented line would not compile otherwise
        return self.execute(code, targets=targets, block=block, label=label)

    def _split_calls(self, f: Callable[..., Any], sequences: Sequence[Sequence[Any]]) -> AsyncResult:
        seqs = _sequences(tuple(sequences))
        targets = self._resolved()
        bounds = _split(len(seqs[0]), len(targets))
        calls: List[Tuple[int, Any]] = [
            (engine, (f, tuple(s[a:b] for s in seqs), {})) for engine, (a, b) in zip(targets, bounds)
        ]
        return self.client.send_calls(calls, getattr(f, "__name__", "f"))

    def scatter(
        self,
        name: str,
        seq: Sequence[Any],
        dist: str = "b",
        flatten: bool = False,
        targets: Targets = None,
        block: Optional[bool] = None,
        track: Optional[bool] = None,
    ) -> Any:
        """Split `seq` across the targets and store each part as `name` on its engine."""
        _check_dist(dist)
        if targets is not None:
            return self._on(targets).scatter(name, seq, flatten=flatten, block=block)
        if not hasattr(seq, "__getitem__") or not hasattr(seq, "__len__"):
            seq = list(seq)
        targets = self._resolved()
        bounds = _split(len(seq), len(targets))
        calls: List[Tuple[int, Any]] = []
        for engine, (a, b) in zip(targets, bounds):
            part = seq[a:b]
            if flatten and len(part) == 1:
                part = part[0]
            calls.append((engine, (_push, ({name: part},), {})))
        ar = self.client.send_calls(calls, "scatter")
        return self._result(ar, block)

    def gather(self, name: str, dist: str = "b", targets: Targets = None, block: Optional[bool] = None) -> Any:
        """Concatenate `name` from every target, in target order."""
        _check_dist(dist)
        calls: List[Tuple[int, Any]] = [(i, (_pull, (name,), {})) for i in self._on(targets)._resolved()]
        return self._result(JoinedResult(self.client.send_calls(calls, "gather")), block)

    @property
    def importer(self) -> Any:
        """``sync_imports()`` as a property: ``with view.importer: import x``."""
        return self.sync_imports(True)

    def activate(self, suffix: str = "") -> None:
        """Register IPython's parallel magics (``%px{suffix}``, ``%%px{suffix}``, ``%autopx{suffix}``,
        ``%pxresult{suffix}``, ``%pxconfig{suffix}``) on this view."""
        from ..integrations.magics import register

        register(self, suffix)

    @contextlib.contextmanager
    def sync_imports(self, local: bool = True, quiet: bool = False) -> Iterator[None]:
        """Imports in this block also run on every engine.

        ``local=False`` (remote-only imports) is not implemented, as in ipyparallel.
        """
        if not local:
            raise NotImplementedError("remote-only imports not yet implemented")
        imported: List[Tuple[str, Any]] = []
        real_import = builtins.__import__
        depth = [0]  # imports made while importing a module are not the user's

        def recording_import(
            name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
        ) -> Any:
            if depth[0] == 0 and level == 0:
                imported.append((name, fromlist))
            depth[0] += 1
            try:
                return real_import(name, globals, locals, fromlist, level)
            finally:
                depth[0] -= 1

        builtins.__import__ = recording_import
        try:
            yield
        finally:
            builtins.__import__ = real_import
        lines = []
        for name, fromlist in imported:
            lines.append(f"from {name} import {', '.join(fromlist)}" if fromlist else f"import {name}")
            if not quiet:
                print(f"importing {', '.join(fromlist) + ' from ' if fromlist else ''}{name} on engine(s)")
        if lines:
            self.execute("\n".join(lines), block=True)


class LoadBalancedView(View):
    """Sends each task to whichever engine (of `targets`, default all) is free first."""

    def __init__(self, client: Client, targets: Targets = None) -> None:
        super().__init__(client, targets)

    def __repr__(self) -> str:
        return f"<LoadBalancedView {self._targets}>"

    def _split_balanced(self, f: Callable[..., Any], sequences: Sequence[Sequence[Any]]) -> AsyncResult:
        seqs = _sequences(tuple(sequences))
        bounds = _split(len(seqs[0]), max(1, len(self.client.ids)))
        calls: List[Any] = [(f, tuple(s[a:b] for s in seqs), {}) for a, b in bounds]
        ar = AsyncResult(self.client, getattr(f, "__name__", "f"))
        return self.client.send_balanced(calls, ar, self._allowed())

    def _allowed(self) -> Optional[List[int]]:
        return None if self._targets is None else self._resolved()

    def apply_async(self, f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult:
        """Run ``f(*args, **kwargs)`` once, on the first free engine."""
        ar = AsyncResult(self.client, getattr(f, "__name__", "f"), single=True)
        return self.client.send_balanced([_with_references((f, args, kwargs))], ar, self._allowed())

    def map_async(
        self,
        f: Callable[..., Any],
        *sequences: Sequence[Any],
        chunksize: Optional[int] = None,
        ordered: bool = True,
        return_exceptions: bool = False,
        **options: Any,
    ) -> AsyncMapResult:
        """Map in tasks of `chunksize` items, each on the first free engine.

        The default chunksize keeps one item per task for up to 32 items per
        engine (the best balance when items are costly), and makes 32 tasks per
        engine beyond that (a long map of cheap items pays little per item).
        With ``ordered=False``, iterating yields results as they complete.
        """
        options.pop("label", None)  # ipyparallel's task label: accepted, not recorded
        if options:
            raise TypeError(f"unexpected options for LoadBalancedView.map: {sorted(options)}")
        seqs = _sequences(sequences)
        n = len(seqs[0])
        if chunksize is None:
            chunksize = auto_chunksize(n, len(self._resolved()) if self._targets is not None else len(self.client))
        if chunksize < 1:
            raise ValueError(f"chunksize must be >= 1, got {chunksize}")
        starts = range(0, n, chunksize)
        ar = (AsyncMapResult if ordered else UnorderedMapResult)(
            self.client, getattr(f, "__name__", "f"), [min(chunksize, n - s) for s in starts]
        )
        ar.return_exceptions = return_exceptions
        chunk = _map_chunk_function(f, seqs)
        calls: List[Any] = [(chunk, (f, *[s[a : a + chunksize] for s in seqs]), {}) for a in starts]
        self.client.send_balanced(calls, ar, self._allowed())
        if not calls:
            ar.set_result([])
        return ar


MAP_TASKS_PER_ENGINE = 32  # of a long load-balanced map with the automatic chunksize


def auto_chunksize(n_items: int, n_engines: int) -> int:
    """Items per task of a load-balanced map when the caller names no chunksize."""
    return max(1, n_items // (MAP_TASKS_PER_ENGINE * max(1, n_engines)))


def _map_chunk_function(f: Any, seqs: Sequence[Sequence[Any]]) -> Callable[..., Any]:
    """What runs a map chunk on an engine: resolving `Reference` items only when there are any."""

    if Reference.used and (isinstance(f, Reference) or any(contains_reference(s) for s in seqs)):
        return _map_chunk_with_references
    return _map_chunk


class RemoteFunction:
    """A function that runs on a view when called (``@view.remote()``)."""

    def __init__(self, view: View, f: Callable[..., Any], block: Optional[bool] = None, **flags: Any) -> None:
        self.view, self.func, self.block = view, f, block
        self.__name__ = getattr(f, "__name__", "remote")
        kind = type(self).__name__
        self.__doc__ = f"{kind} on {view!r}" + (f": {f.__doc__}" if getattr(f, "__doc__", None) else "")
        if flags:
            raise TypeError(f"unsupported flags for {kind}: {sorted(flags)}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.view._result(self.view.apply_async(self.func, *args, **kwargs), self.block)


class ParallelFunction(RemoteFunction):
    """``@view.parallel()``: called, runs once per engine on its part of the sequences
    and joins the results (as ipyparallel does); ``.map()`` maps element-wise."""

    def __call__(self, *sequences: Sequence[Any]) -> Any:
        view = self.view
        if isinstance(view, LoadBalancedView):
            parts = view._split_balanced(self.func, sequences)
        else:
            assert isinstance(view, DirectView)
            parts = view._split_calls(self.func, sequences)
        return view._result(JoinedResult(parts), self.block)

    def map(self, *sequences: Sequence[Any]) -> Any:
        return self.view._result(self.view.map_async(self.func, *sequences), self.block)


def remote(view: View, block: Optional[bool] = None, **flags: Any) -> Callable[[Callable[..., Any]], RemoteFunction]:
    """``@remote(view)``: calling the function runs it on `view` (ipyparallel's module-level form)."""
    return view.remote(block=block, **flags)


def parallel(
    view: View, dist: str = "b", block: Optional[bool] = None, **flags: Any
) -> Callable[[Callable[..., Any]], ParallelFunction]:
    """``@parallel(view)``: calling the function maps it over its sequences on `view`."""
    return view.parallel(dist=dist, block=block, **flags)
