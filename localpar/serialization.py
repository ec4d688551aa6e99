"""The one way objects cross a process boundary in localpar.

``dumps`` pickles with cloudpickle at protocol 5, so lambdas, closures and
functions from ``__main__`` or a notebook travel by value.  Buffers of at least
``SHM_THRESHOLD`` bytes (numpy arrays above all) go out of band into shared
memory segments (see ``sharedmem``) and only their names travel in the message.

Message layout: ``[u32 n][n bytes: pickled segment refs][pickle body]``.
"""

from __future__ import annotations

import mmap
import pickle
import struct
import sys
import types
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import cloudpickle

from . import sharedmem
from .errors import SerializationError
from .sharedmem import SegmentRef

SHM_THRESHOLD = 64 * 1024
"""Buffers at least this big travel through shared memory instead of the pipe."""

_HEADER = struct.Struct("<I")
_NO_SEGMENTS = _HEADER.pack(0)


def dumps(
    obj: Any, cluster_id: str, what: str = "object", pool: Optional[sharedmem.SegmentPool] = None
) -> Tuple[bytes, List[SegmentRef]]:
    """Serialize `obj`; returns the message and the segments it refers to.

    Big buffers go into `pool` segments if given, else into new ones; if shared
    memory is full they stay in the message (with a one-time warning).
    Raises `SerializationError` naming `what` if the object cannot be pickled.
    """
    plain = plain_data(obj)
    if plain is SCALARS_ONLY:  # the common small message: no buffer can go out of band
        try:
            return _NO_SEGMENTS + pickle.dumps(obj, protocol=5), []
        except Exception as exc:  # e.g. too deeply nested
            raise SerializationError(f"cannot pickle {what} ({_short_repr(obj)}): {type(exc).__name__}: {exc}") from exc
    segments: List[SegmentRef] = []
    full = False  # shared memory said no: keep the rest in the pickle stream too

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        nonlocal full
        raw = buf.raw()
        if raw.nbytes < SHM_THRESHOLD or full:
            return True  # keep it in the pickle stream
        try:
            segments.append(pool.export(raw) if pool is not None else sharedmem.export(cluster_id, raw))
        except sharedmem.SharedMemoryFull as exc:
            full = True
            sharedmem.warn_full(exc)
            return True
        return False

    try:
        if plain:  # the C pickler writes these as cloudpickle would, 5x faster
            body = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
        else:
            body = cloudpickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    except Exception as exc:
        for ref in segments:
            if pool is not None and ref.pooled:
                pool.release(ref.name)
            else:
                sharedmem.unlink(ref.name)
        raise SerializationError(f"cannot pickle {what} ({_short_repr(obj)}): {type(exc).__name__}: {exc}") from exc
    if not segments:
        return _NO_SEGMENTS + body, segments
    refs = pickle.dumps(segments, protocol=5)
    return _HEADER.pack(len(refs)) + refs + body, segments


_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
_CONTAINERS = frozenset({tuple, list, dict})
_PLAIN_BUDGET = 64  # objects looked at before giving up and using cloudpickle


SCALARS_ONLY = 1
WITH_ARRAYS = 2


def plain_data(obj: Any) -> int:
    """Whether `obj` is builtin scalars (``SCALARS_ONLY``), or scalars and numpy arrays
    of plain dtypes (``WITH_ARRAYS``), nested in a few tuples, lists and dicts:
    nothing that cloudpickle would pickle by value.  0 otherwise."""
    stack = [obj]
    budget = _PLAIN_BUDGET
    found = SCALARS_ONLY
    ndarray = None
    while stack:
        budget -= 1
        if budget < 0:
            return 0
        item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind in _CONTAINERS:
            if kind is dict:
                stack += item.keys()
                stack += item.values()
            else:
                stack += item
            continue
        if ndarray is None:
            numpy = sys.modules.get("numpy")  # not imported: no array can be here
            ndarray = numpy.ndarray if numpy is not None else ()
        if kind is not ndarray or item.dtype.hasobject:
            return 0
        found = WITH_ARRAYS
    return found


def loads(
    message: Union[bytes, memoryview],
    unlink: bool = True,
    what: str = "object",
    on_release: Optional[Callable[[SegmentRef], None]] = None,
) -> Any:
    """Rebuild an object from `dumps` output.

    With `unlink`, segments are unlinked once mapped; pooled ones are instead
    handed to `on_release` when the last object using them is gone.
    """
    view = memoryview(message)
    (n,) = _HEADER.unpack_from(view)
    buffers: Optional[List[memoryview]] = None
    if n:
        segments: List[SegmentRef] = pickle.loads(view[_HEADER.size : _HEADER.size + n])
        try:
            buffers = [sharedmem.attach(ref) for ref in segments]
        finally:
            if unlink:
                for ref in segments:
                    if not ref.pooled:
                        sharedmem.unlink(ref.name)
        if on_release is not None:
            for ref, buf in zip(segments, buffers):
                if ref.pooled:
                    release_when_unused(buf, ref, on_release)
    try:
        return pickle.loads(view[_HEADER.size + n :], buffers=buffers)
    except Exception as exc:
        raise SerializationError(f"cannot unpickle {what}: {type(exc).__name__}: {exc}") from exc


def dumps_inline(obj: Any) -> bytes:
    """`obj` pickled whole, big buffers included: for the Manager dict, which keeps bytes
    (so values only cloudpickle can pickle are safe there too)."""
    try:
        return cloudpickle.dumps(obj, protocol=5)
    except Exception as exc:
        raise SerializationError(f"cannot pickle {_short_repr(obj)}: {type(exc).__name__}: {exc}") from exc


def loads_inline(blob: bytes) -> Any:
    """The object `dumps_inline` pickled."""
    try:
        return pickle.loads(blob)
    except Exception as exc:
        raise SerializationError(f"cannot unpickle: {type(exc).__name__}: {exc}") from exc


def release_when_unused(buf: memoryview, ref: SegmentRef, on_release: Callable[[SegmentRef], None]) -> None:
    """Call ``on_release(ref)`` once nothing uses the mapping behind `buf` any more."""
    if isinstance(buf.obj, mmap.mmap):
        weakref.finalize(buf.obj, on_release, ref)
    else:
        on_release(ref)


def segments_of(message: Union[bytes, memoryview]) -> List[SegmentRef]:
    """The segments a message refers to, without loading it."""
    (n,) = _HEADER.unpack_from(message)
    return pickle.loads(memoryview(message)[_HEADER.size : _HEADER.size + n]) if n else []


CALL_FUNCTION_SIZE = struct.Struct("<I")
"""A call is ``[u32 size][the function, as dumps() made it][its arguments, likewise]``."""

_by_reference: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
_NO_ARGUMENTS = _NO_SEGMENTS + pickle.dumps(((), {}), protocol=5)


def dumps_call(
    f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any], cluster_id: str
) -> Tuple[bytes, List[SegmentRef]]:
    """Serialize a call; the function apart, so that an engine unpickles it only once.

    A module-level function pickles to its import path, always the same bytes:
    those are cached.  Functions sent by value are pickled at every call, since
    the globals they capture may have changed.
    """
    try:
        fblob = _by_reference.get(f) if isinstance(f, types.FunctionType) else None
        fsegments: List[SegmentRef] = []
        if fblob is None:
            # cloudpickle renames code sent by value "<dynamic-code>"; the engine
            # restores the real file so that remote tracebacks show source lines.
            filename = getattr(getattr(f, "__code__", None), "co_filename", None)
            fblob, fsegments = dumps((f, filename), cluster_id, what="the function")
            if isinstance(f, types.FunctionType) and not fsegments and _pickled_by_reference(f):
                _by_reference[f] = fblob
        if args or kwargs:
            ablob, asegments = dumps((args, kwargs), cluster_id, what="the arguments")
        else:
            ablob, asegments = _NO_ARGUMENTS, []
    except SerializationError as exc:
        culprit = find_unpicklable(call_parts(f, args, kwargs))
        raise SerializationError(f"cannot send the call: cannot pickle {culprit or exc}") from None
    return CALL_FUNCTION_SIZE.pack(len(fblob)) + fblob + ablob, fsegments + asegments


def _pickled_by_reference(f: Any) -> bool:
    check = getattr(getattr(cloudpickle, "cloudpickle", None), "_should_pickle_by_reference", None)
    try:
        return bool(check(f)) if check is not None else False
    except Exception:
        return False


def find_unpicklable(parts: Iterable[Tuple[str, Any]]) -> Optional[str]:
    """Name the first of `parts` that cannot be pickled, with the reason; None if all can."""
    for name, obj in parts:
        try:
            cloudpickle.dumps(obj, protocol=5, buffer_callback=lambda buf: False)
        except Exception as exc:
            return f"{name} ({_short_repr(obj)}): {type(exc).__name__}: {exc}"
    return None


def call_parts(f: Callable[..., Any], args: Tuple[Any, ...], kwargs: dict[str, Any]) -> List[Tuple[str, Any]]:
    """Name each piece of a call, for error messages."""
    fname = getattr(f, "__qualname__", None) or repr(f)
    parts: List[Tuple[str, Any]] = [(f"the function {fname}", f)]
    parts += [(f"argument {i} of {fname}", a) for i, a in enumerate(args)]
    parts += [(f"keyword argument {k!r} of {fname}", v) for k, v in kwargs.items()]
    return parts


def _short_repr(obj: Any, limit: int = 80) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
