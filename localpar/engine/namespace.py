"""Operations on an engine's namespace, sent as ordinary tasks by the views.

They run *on the engine* (pickled by reference, so they cost nothing to send):
push/pull/execute/run act on the engine's namespace dict, which is also the
globals of every function defined in ``__main__`` (a script or a notebook) or
marked ``@interactive``, as on an ipyparallel engine.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Union

from ..wire.ops import (
    KeptException,
    interactive,  # noqa: F401  (kept importable from here)
)
from . import kernel
from .dependent import dependent, require, resume  # noqa: F401  (looked up by name: wire.dependent, the balancer)
from .functions import bind_to_namespace


def current_engine() -> Any:
    from .loop import current_engine as _current

    return _current()


def push(values: Dict[str, Any]) -> None:
    """Store `values` in the namespace; ``'a.b'`` sets an attribute of ``a``.

    ``__main__`` functions among the values are rebuilt on the namespace, so they see the
    names pushed beside them; the pushed names win over values the functions captured.
    """
    namespace = current_engine().namespace
    bound: Dict[str, Any] = {}
    for name, value in values.items():
        bound[name], captured = bind_to_namespace(value, namespace)
        namespace.update({k: v for k, v in captured.items() if k not in values})
    for name, value in bound.items():
        if "." in name:
            owner, _, attr = name.rpartition(".")
            setattr(_lookup(namespace, owner), attr, value)
        else:
            namespace[name] = value


def _lookup(namespace: Dict[str, Any], name: str) -> Any:
    head, *attrs = name.split(".")
    if head not in namespace:
        raise NameError(f"name {head!r} is not defined on engine {current_engine().id}")
    value = namespace[head]
    for attr in attrs:
        value = getattr(value, attr)
    return value


def pull(names: Union[str, Sequence[str]]) -> Any:
    namespace = current_engine().namespace
    missing = [n for n in ([names] if isinstance(names, str) else names) if n.split(".")[0] not in namespace]
    if missing:
        raise NameError(f"name(s) {missing} not defined on engine {current_engine().id}")
    if isinstance(names, str):
        return _lookup(namespace, names)
    return [_lookup(namespace, n) for n in names]


def clear() -> None:
    """Empty the engine's namespace (keeping what every namespace starts with)."""
    ns = current_engine().namespace
    kept = {k: ns[k] for k in ("__name__", "__builtins__") if k in ns}
    ns.clear()
    ns.update(kept)
    kernel.reset_namespace()


def execute(code: str, filename: str = "<execute>") -> None:
    exec(compile(code, filename, "exec"), current_engine().namespace)


_execution_count = 0  # plain Python cells (no IPython here): counted as IPython counts them


def execute_interactive(code: str, filename: str = "<execute>", silent: bool = False) -> Any:
    """Run `code` like a notebook cell, as ipyparallel's ``execute`` does: through IPython
    when it is importable here (``kernel``), else as plain Python.  Returns the cell's
    `ExecuteReply`: the value of a final expression is its result, unless `silent`."""
    if kernel.available():
        return kernel.run_cell(code, silent)
    return _run_plain(code, filename, silent)


def _run_plain(code: str, filename: str, silent: bool) -> Any:
    """A cell without IPython; a failure raises ``kernel.CellError`` whose traceback
    starts at the cell (no frame of this module)."""
    import ast

    from ..wire.execreply import ExecuteReply

    global _execution_count
    namespace = current_engine().namespace
    try:
        tree = ast.parse(code, filename)
    except SyntaxError as exc:
        raise _cell_error(exc, code, skip=0) from None
    if not silent:
        _execution_count += 1
    last = tree.body.pop() if not silent and tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    try:
        exec(compile(tree, filename, "exec"), namespace)
        value = None if last is None else eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
    except Exception as exc:
        raise _cell_error(exc, code, skip=1) from None
    result = None
    if value is not None:
        result = {"data": {"text/plain": repr(value)}, "execution_count": _execution_count, "metadata": {}}
    return ExecuteReply(_execution_count, result, "")


_IPYTHON_SYNTAX = ("%", "!", "?")


def _cell_error(exc: BaseException, code: str, skip: int) -> kernel.CellError:
    """The CellError of a plain cell: its traceback without this module's `skip` frames, and,
    for IPython syntax (a magic, ``!shell``), the reason it cannot run here."""
    import traceback

    if isinstance(exc, SyntaxError):
        magic = [ln.strip() for ln in code.splitlines() if ln.lstrip().startswith(_IPYTHON_SYNTAX)]
        if magic:
            message = (
                f"{magic[0]!r} is IPython syntax (a magic or a shell command), and IPython is not importable "
                "in this engine's environment: install ipython there, or send plain Python"
            )
            return kernel.CellError("SyntaxError", message, f"SyntaxError: {message}\n")
        return kernel.CellError("SyntaxError", str(exc), "".join(traceback.format_exception_only(type(exc), exc)))
    tb = exc.__traceback__
    for _ in range(skip):
        tb = tb.tb_next if tb is not None else None
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return kernel.CellError(type(exc).__name__, str(exc), text)


def _bound(f: Any, namespace: Dict[str, Any]) -> Any:
    """`f` ready to run here, by the rule in ``engine``: the globals it captured set first."""
    f, captured = bind_to_namespace(f, namespace)
    namespace.update(captured)
    return f


def map_chunk(f: Callable[..., Any], *chunks: Sequence[Any]) -> List[Any]:
    f = _bound(f, current_engine().namespace)
    return [f(*items) for items in zip(*chunks)]


def call_with_references(f: Any, args: Sequence[Any], kwargs: Dict[str, Any]) -> Any:
    """Call `f` with every `Reference` (in f, args, kwargs) looked up in the namespace."""
    from ..wire.reference import resolve

    namespace = current_engine().namespace
    f = _bound(resolve(f, namespace), namespace)
    return f(*resolve(list(args), namespace), **resolve(kwargs, namespace))


def map_chunk_with_references(f: Any, *chunks: Sequence[Any]) -> List[Any]:
    from ..wire.reference import resolve

    namespace = current_engine().namespace
    f = _bound(resolve(f, namespace), namespace)
    return [f(*resolve(list(items), namespace)) for items in zip(*chunks)]


def engine_id() -> int:
    return current_engine().id


def call_keeping_exception(f: Callable[[], Any]) -> Any:
    """``f()``; an Exception it raises is returned, as a `KeptException`, if it pickles (else
    raised, to become a RemoteError as usual)."""
    try:
        return f()
    except Exception as exc:
        import traceback

        import cloudpickle

        try:
            cloudpickle.dumps(exc)
        except Exception:
            raise exc from None
        return KeptException(exc, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
