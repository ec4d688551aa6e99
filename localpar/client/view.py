"""Views: which engines a call goes to, and how (ipyparallel's DirectView and LoadBalancedView)."""

from __future__ import annotations

import builtins
import contextlib
import functools
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from ..errors import not_picklable
from ..wire.ops import EngineOp
from ..wire.reference import Reference, contains_reference
from . import picklers
from .asyncresult import AsyncResult
from .dependencies import FlagValues, as_dependency, valid_dependency
from .imap import LazyMapIterator
from .imap import imap as start_imap
from .mapresult import AsyncMapResult, JoinedResult, UnorderedMapResult

_AR = TypeVar("_AR", bound=AsyncResult)

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


def _partition(seq: Sequence[Any], n_parts: int, dist: str) -> List[Any]:
    """`seq` in `n_parts` parts, as ipyparallel's maps: ``'b'`` contiguous blocks (as even as
    possible, in order), ``'r'`` round-robin (part i holds items i, i + n, i + 2n, ...)."""
    if dist == "r":
        return [seq[i::n_parts] for i in range(n_parts)]
    return [seq[a:b] for a, b in _split(len(seq), n_parts)]


class View:
    """What both views share: the client, the default blocking mode, waiting."""

    def __init__(self, client: Client, targets: Targets) -> None:
        self.client = client
        self._targets = targets
        self.block = False
        self.history: List[str] = []  # msg_ids of the calls made through this view (as ipyparallel)

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

    def _sent(self, ar: _AR) -> _AR:
        """Note the msg_ids of a call made through this view in its `history`."""
        self.history.extend(ar.msg_ids)
        return ar

    def get_result(self, indices_or_msg_ids: Any = None, block: Optional[bool] = None, owner: bool = False) -> Any:
        """``client.get_result`` where ints index this view's `history`, as ipyparallel's."""
        jobs = -1 if indices_or_msg_ids is None else indices_or_msg_ids
        if isinstance(jobs, int):
            jobs = self.history[jobs]
        elif isinstance(jobs, (list, tuple, set)):
            jobs = [self.history[j] if isinstance(j, int) else j for j in jobs]
        return self.client.get_result(jobs, block=block, owner=owner)

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

    lazy_imap = False
    """Whether `imap` consumes its input as tasks finish (a LoadBalancedView's) or up front."""

    def imap(self, f: Callable[..., Any], *sequences: Sequence[Any], **options: Any) -> Iterator[Any]:
        """``iter(map_async(...))``: the results in order, each as it is ready (as ipyparallel's
        DirectView.imap; a LoadBalancedView's imap is lazy, see there)."""
        return iter(self.map_async(f, *sequences, **options))

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

        `dist` is ipyparallel's partitioning: ``'b'`` contiguous blocks, ``'r'`` round-robin
        (the results are interleaved back into input order).
        """
        _check_dist(dist)
        return lambda f: ParallelFunction(self, f, block, dist=dist, **flags)

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
    if dist not in ("b", "r"):
        raise ValueError(f"dist must be 'b' (contiguous blocks) or 'r' (round-robin), got {dist!r}")


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
        return self._sent(self.client.send_calls([(i, call) for i in self._resolved()], fname, single))

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
        self._sent(self.client.send_calls(calls, ar.fname, ar=ar))
        return ar

    # -- ipyparallel's serializer switches (see picklers) ------------------------------------
    def use_cloudpickle(self) -> Any:
        """``__main__`` functions travel with the client's values of their globals (the default)."""
        return picklers.switch(self, picklers.CLIENT_GLOBALS)

    def use_pickle(self) -> Any:
        """``__main__`` functions find their globals in the engine's namespace, as with
        ipyparallel's default pickling."""
        return picklers.switch(self, picklers.ENGINE_GLOBALS)

    def use_dill(self) -> Any:
        """As `use_cloudpickle` (needs dill installed, as ipyparallel's)."""
        return picklers.switch(self, "dill")

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

    def _split_calls(self, f: Callable[..., Any], sequences: Sequence[Sequence[Any]], dist: str = "b") -> AsyncResult:
        seqs = _sequences(tuple(sequences))
        targets = self._resolved()
        parts = [_partition(s, len(targets), dist) for s in seqs]
        calls: List[Tuple[int, Any]] = [
            (engine, (f, tuple(p[i] for p in parts), {})) for i, engine in enumerate(targets)
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
            return self._on(targets).scatter(name, seq, dist=dist, flatten=flatten, block=block)
        if not hasattr(seq, "__getitem__") or not hasattr(seq, "__len__"):
            seq = list(seq)
        targets = self._resolved()
        calls: List[Tuple[int, Any]] = []
        for engine, part in zip(targets, _partition(seq, len(targets), dist)):
            if flatten and len(part) == 1:
                part = part[0]
            calls.append((engine, (_push, ({name: part},), {})))
        ar = self._sent(self.client.send_calls(calls, "scatter"))
        return self._result(ar, block)

    def gather(self, name: str, dist: str = "b", targets: Targets = None, block: Optional[bool] = None) -> Any:
        """Concatenate `name` from every target, in target order."""
        _check_dist(dist)
        calls: List[Tuple[int, Any]] = [(i, (_pull, (name,), {})) for i in self._on(targets)._resolved()]
        return self._result(JoinedResult(self._sent(self.client.send_calls(calls, "gather")), dist), block)

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


class BroadcastView(DirectView):
    """ipyparallel's BroadcastView (``rc.broadcast_view()``): on one machine, a DirectView.
    ipyparallel sends one message down a tree of schedulers to reach many remote engines;
    here each engine has its own pipe from the client, so there is no tree to build.
    `is_coalescing` is kept, and changes nothing."""

    def __init__(self, client: Client, targets: Targets = "all", is_coalescing: bool = False) -> None:
        super().__init__(client, targets)
        self.is_coalescing = is_coalescing


class LoadBalancedView(View):
    """Sends each task to whichever engine (of `targets`, default all) is free first.

    Its task flags, as ipyparallel's (see ``dependencies``): `retries` (run a task that raised,
    or whose engine died, again on another engine, up to that many times), `after` and `follow`
    (msg_ids, AsyncResults or a `Dependency`: run after them, and where they ran), `timeout`
    (seconds a task may wait for those, or for an engine, before it fails with `TaskTimeout`).
    """

    _TASK_FLAGS = ("retries", "after", "follow", "timeout")

    def __init__(self, client: Client, targets: Targets = None) -> None:
        super().__init__(client, targets)
        self.retries = 0
        self.after: Any = None
        self.follow: Any = None
        self.timeout: Optional[float] = 0.0

    def set_flags(self, **flags: Any) -> LoadBalancedView:  # type: ignore[override]
        """Set `block`, `targets` and the task flags (`retries`, `after`, `follow`, `timeout`);
        returns the view, as ipyparallel's does."""
        own = {k: flags.pop(k) for k in list(flags) if k in self._TASK_FLAGS}
        super().set_flags(**flags)
        for name in ("after", "follow"):
            if name in own:
                if not valid_dependency(own[name]):
                    raise ValueError(f"Invalid dependency: {own[name]!r}")
                setattr(self, name, own[name])
        if "timeout" in own:
            t = own["timeout"]
            if not isinstance(t, (int, float, type(None))) or isinstance(t, bool):
                raise TypeError(f"Invalid type for timeout: {type(t)!r}")
            if t is not None and t < 0:
                raise ValueError(f"Invalid timeout: {t}")
            self.timeout = t
        if "retries" in own:
            if not isinstance(own["retries"], int) or isinstance(own["retries"], bool):
                raise TypeError(f"retries must be int, not {type(own['retries'])!r}")
            self.retries = own["retries"]
        return self

    def _task_flags(self) -> Optional[FlagValues]:
        """The flags for the next submission, or None if none is set (the plain path)."""
        retries, after, follow, timeout = self.retries, self.after, self.follow, self.timeout
        if not retries and after is None and follow is None and not timeout:
            return None
        if not isinstance(retries, int) or isinstance(retries, bool):
            raise TypeError(f"retries must be int, not {type(retries)!r}")
        if not isinstance(timeout, (int, float, type(None))) or isinstance(timeout, bool):
            raise TypeError(f"Invalid type for timeout: {type(timeout)!r}")
        for name, dep in (("after", after), ("follow", follow)):
            if not valid_dependency(dep):
                raise ValueError(f"Invalid dependency for {name}: {dep!r}")
        values = FlagValues(retries, float(timeout or 0.0), as_dependency(after), as_dependency(follow))
        if values.retries <= 0 and values.timeout <= 0 and values.after is None and values.follow is None:
            return None
        return values

    def __repr__(self) -> str:
        return f"<LoadBalancedView {self._targets}>"

    def _split_balanced(
        self, f: Callable[..., Any], sequences: Sequence[Sequence[Any]], dist: str = "b"
    ) -> AsyncResult:
        seqs = _sequences(tuple(sequences))
        n = max(1, len(self.client.ids))
        parts = [_partition(s, n, dist) for s in seqs]
        calls: List[Any] = [(f, tuple(p[i] for p in parts), {}) for i in range(n)]
        ar = AsyncResult(self.client, getattr(f, "__name__", "f"))
        return self._send_balanced(calls, ar, self._task_flags())

    def _allowed(self) -> Optional[List[int]]:
        return None if self._targets is None else self._resolved()

    def _send_balanced(self, calls: List[Any], ar: AsyncResult, flags: Optional[FlagValues] = None) -> AsyncResult:
        """Queue the calls of `ar` (with the task `flags`, if any) and note their msg_ids in
        this view's `history`."""
        return self._sent(self.client.send_balanced(calls, ar, self._allowed(), flags))

    def apply_async(self, f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult:
        """Run ``f(*args, **kwargs)`` once, on the first free engine."""
        flags = self._task_flags()
        ar = AsyncResult(self.client, getattr(f, "__name__", "f"), single=True)
        return self._send_balanced([_with_references((f, args, kwargs))], ar, flags)

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
        self._send_balanced(calls, ar, self._task_flags())
        if not calls:
            ar.set_result([])
        return ar

    lazy_imap = True

    def imap(  # type: ignore[override]
        self,
        f: Callable[..., Any],
        *sequences: Any,
        ordered: bool = True,
        max_outstanding: Union[int, str] = "auto",
        return_exceptions: bool = False,
    ) -> LazyMapIterator:
        """A lazy map, one task per item: the inputs are consumed as tasks finish, at most
        `max_outstanding` in flight (``'auto'``: one per engine of the view; 0: no limit), so
        `sequences` may be infinite generators.  Returns a `LazyMapIterator` yielding results in
        input order (or, with ``ordered=False``, as they finish); its ``cancel()`` stops
        consuming the input.  With ``return_exceptions=True`` a failed task's error is yielded
        in its place; otherwise it is raised there and the iteration ends."""
        if not sequences:
            raise TypeError("imap needs at least one sequence to map onto")
        if max_outstanding == "auto":
            limit = len(self)
        elif isinstance(max_outstanding, int) and not isinstance(max_outstanding, bool) and max_outstanding >= 0:
            limit = max_outstanding
        else:
            raise ValueError(f"max_outstanding must be 'auto' or an int >= 0, got {max_outstanding!r}")
        return start_imap(
            functools.partial(self.apply_async, f), sequences, ordered, limit, return_exceptions,
            f"localpar-imap-{self.client.cluster_id}", self.client.ledger.check_can_wait,
        )  # fmt: skip


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

    def __init__(
        self, view: View, f: Callable[..., Any], block: Optional[bool] = None, dist: str = "b", **flags: Any
    ) -> None:
        super().__init__(view, f, block, **flags)
        _check_dist(dist)
        self.dist = dist

    def __call__(self, *sequences: Sequence[Any]) -> Any:
        view = self.view
        if isinstance(view, LoadBalancedView):
            parts = view._split_balanced(self.func, sequences, self.dist)
        else:
            assert isinstance(view, DirectView)
            parts = view._split_calls(self.func, sequences, self.dist)
        return view._result(JoinedResult(parts, self.dist), self.block)

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
