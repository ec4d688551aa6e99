"""The one way objects cross a process boundary in localpar.

``dumps`` pickles with cloudpickle at protocol 5, so lambdas, closures and
functions from ``__main__`` or a notebook travel by value.  Buffers of at least
``SHM_THRESHOLD`` bytes go into shared memory segments (see ``sharedmem``) and
only their names travel in the message: numpy arrays (and any pickle-5 buffer,
memoryviews included) out of band, mapped by the receiver without a copy;
``bytes`` and ``bytearray``, which the pickler writes itself, as big writes of
the pickle stream, copied once on each side (see ``_Stream``).

Message layout: ``[u32 n][n bytes: pickled segment refs][pickle body]``.
"""

from __future__ import annotations

import collections
import io
import mmap
import pickle
import struct
import sys
import types
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import cloudpickle

from ..errors import SerializationError
from . import captures, hugepages, sharedmem
from .sharedmem import SegmentRef

SHM_THRESHOLD = 64 * 1024
"""Buffers at least this big travel through shared memory instead of the pipe."""

_HEADER = struct.Struct("<I")
_NO_SEGMENTS = _HEADER.pack(0)


def dumps(
    obj: Any,
    cluster_id: str,
    what: str = "object",
    pool: Optional[sharedmem.SegmentPool] = None,
    plain: Optional[int] = None,
) -> Tuple[bytes, List[SegmentRef]]:
    """Serialize `obj`; returns the message and the segments it refers to.

    Big buffers go into `pool` segments if given, else into new ones; if shared
    memory is full they stay in the message (with a one-time warning).
    Raises `SerializationError` naming `what` if the object cannot be pickled.  `plain` is
    ``plain_data(obj)`` if the caller has it already.
    """
    if plain is None:
        plain = plain_data(obj)
    if plain is SCALARS_ONLY:  # the common small message: no buffer can go out of band
        try:
            return _NO_SEGMENTS + pickle.dumps(obj, protocol=5), []
        except Exception as exc:  # e.g. too deeply nested
            raise SerializationError(f"cannot pickle {what} ({_short_repr(obj)}): {type(exc).__name__}: {exc}") from exc
    stream = _Stream(cluster_id, pool)
    try:
        if plain == WITH_ARRAYS:  # the C pickler writes these as cloudpickle would, 5x faster
            stream.parts.append(pickle.dumps(obj, protocol=5, buffer_callback=stream.out_of_band))
        else:  # big bytes may be anywhere: the stream takes them as the pickler writes them
            pickler = pickle.Pickler if plain else _Pickler
            pickler(stream, 5, buffer_callback=stream.out_of_band).dump(obj)
    except Exception as exc:
        for ref in stream.segments:
            if pool is not None and ref.pooled:
                pool.release(ref.name)
            else:
                sharedmem.unlink(ref.name)
        raise SerializationError(f"cannot pickle {what} ({_short_repr(obj)}): {type(exc).__name__}: {exc}") from exc
    body = stream.parts[0] if len(stream.parts) == 1 else b"".join(stream.parts)
    if not stream.segments:
        return _NO_SEGMENTS + body, []
    refs = pickle.dumps(stream.segments, protocol=5)
    return _HEADER.pack(len(refs)) + refs + body, stream.segments


class _Stream:
    """Where a pickler writes a message: big pieces go to shared memory.

    Two kinds: pickle-5 buffers handed out of band (numpy arrays; the receiver
    maps them, zero-copy), and big writes of the stream itself.  The C pickler
    writes a payload of 64 KiB or more (``bytes``, ``bytearray``, a buffer kept
    in band) with a write of its own, so those become segments spliced back
    into the stream where they were (``SegmentRef.at``): one copy on each side,
    and no pickler hook per object.  Nothing goes to a full /dev/shm.
    """

    __slots__ = ("cluster_id", "pool", "parts", "size", "segments", "full")

    def __init__(self, cluster_id: str, pool: Optional[sharedmem.SegmentPool]) -> None:
        self.cluster_id = cluster_id
        self.pool = pool
        self.parts: List[bytes] = []
        self.size = 0  # bytes written in band so far
        self.segments: List[SegmentRef] = []
        self.full = False  # shared memory said no: keep everything in band

    def _export(self, view: memoryview) -> Optional[SegmentRef]:
        if self.full:
            return None
        try:
            return self.pool.export(view) if self.pool is not None else sharedmem.export(self.cluster_id, view)
        except sharedmem.SharedMemoryFull as exc:
            self.full = True
            sharedmem.warn_full(exc)
            return None

    def out_of_band(self, buf: pickle.PickleBuffer) -> bool:
        raw = buf.raw()
        if raw.nbytes < SHM_THRESHOLD:
            return True  # keep it in the pickle stream
        ref = self._export(raw)
        if ref is None:
            return True
        self.segments.append(ref)
        return False

    def write(self, data: Any) -> int:
        n = len(data) if type(data) is bytes else memoryview(data).nbytes
        if n >= SHM_THRESHOLD:
            ref = self._export(memoryview(data))
            if ref is not None:
                self.segments.append(ref._replace(at=self.size))
                return n
        self.parts.append(data if type(data) is bytes else bytes(data))  # a payload view may not outlive the call
        self.size += n
        return n


def _reduce_memoryview(view: memoryview) -> Tuple[Any, Tuple[Any, ...]]:
    data = pickle.PickleBuffer(view if view.contiguous else view.tobytes())
    return _rebuild_memoryview, (data, view.format, view.shape)


def _rebuild_memoryview(data: Any, fmt: Any, shape: Tuple[int, ...]) -> memoryview:
    """A memoryview again: on the segment itself if it came out of band."""
    view = memoryview(data).cast("B")
    if fmt == "B" and len(shape) == 1:
        return view
    try:
        return view.cast(fmt, shape)
    except (TypeError, ValueError):  # a format cast() does not take: the bytes, flat
        return view


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with memoryviews sent as buffers (cloudpickle copies them into bytes)."""

    # cloudpickle's own table with one more entry: as many maps as it has, so lookups cost the same
    _maps = cloudpickle.Pickler.dispatch_table.maps
    dispatch_table = collections.ChainMap({**_maps[0], memoryview: _reduce_memoryview}, *_maps[1:])


_SCALARS = frozenset({type(None), bool, int, float, complex, str})
_CONTAINERS = frozenset({tuple, list, dict})
_PLAIN_BUDGET = 64  # objects looked at before giving up and using cloudpickle


SCALARS_ONLY = 1
WITH_ARRAYS = 2
WITH_BYTES = 3  # and bytes or bytearrays of at least SHM_THRESHOLD


def plain_data(obj: Any) -> int:
    """Whether `obj` is builtin scalars (``SCALARS_ONLY``), or scalars, small
    bytearrays and numpy arrays of plain dtypes (``WITH_ARRAYS``), or those and
    bytes or bytearrays of at least ``SHM_THRESHOLD`` (``WITH_BYTES``), nested in
    a few tuples, lists and dicts: nothing that cloudpickle would pickle by
    value.  0 otherwise."""
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
        if kind is bytes or kind is bytearray:
            if len(item) >= SHM_THRESHOLD:
                found = WITH_BYTES
            elif kind is bytearray and found is SCALARS_ONLY:
                found = WITH_ARRAYS
            continue
        if ndarray is None:
            numpy = sys.modules.get("numpy")  # not imported: no array can be here
            ndarray = numpy.ndarray if numpy is not None else ()
        if kind is not ndarray or item.dtype.hasobject:
            return 0
        if found is SCALARS_ONLY:
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
    handed to `on_release` when the last object using them is gone, or, for the
    bytes copied out of them, right after loading.
    """
    view = memoryview(message)
    (n,) = _HEADER.unpack_from(view)
    body = view[_HEADER.size + n :]
    if not n:
        try:
            return pickle.loads(body)
        except Exception as exc:
            raise SerializationError(f"cannot unpickle {what}: {type(exc).__name__}: {exc}") from exc
    segments: List[SegmentRef] = pickle.loads(view[_HEADER.size : _HEADER.size + n])
    out_of_band = [ref for ref in segments if ref.at < 0]
    spliced = [ref for ref in segments if ref.at >= 0]
    try:
        buffers = [sharedmem.attach(ref) for ref in out_of_band]
        pieces = [sharedmem.attach(ref) for ref in spliced]
    finally:
        if unlink:
            for ref in segments:
                if not ref.pooled:
                    sharedmem.unlink(ref.name)
    if on_release is not None:
        for ref, buf in zip(out_of_band, buffers):
            if ref.pooled:
                release_when_unused(buf, ref, on_release)
    if not spliced:
        return _unpickle(lambda: pickle.loads(body, buffers=buffers), what)
    try:
        reader = _Spliced(body, [(ref.at, piece) for ref, piece in zip(spliced, pieces)])
        return _unpickle(lambda: pickle.Unpickler(reader, buffers=buffers).load(), what)
    finally:  # copied out: unmapped, and the sender may reuse them now
        for piece in pieces:
            mapping = piece.obj
            piece.release()
            try:
                if isinstance(mapping, mmap.mmap):
                    mapping.close()
            except BufferError:  # a view of it is still alive: it closes with that view
                pass
        if on_release is not None:
            for ref in spliced:
                if ref.pooled:
                    on_release(ref)


def _unpickle(load: Callable[[], Any], what: str) -> Any:
    try:
        return load()
    except Exception as exc:
        raise SerializationError(f"cannot unpickle {what}: {type(exc).__name__}: {exc}") from exc


class _Spliced:
    """A message's pickle stream, read back with its big writes taken from their segments:
    the unpickler reads them straight into the object it rebuilds (one copy)."""

    def __init__(self, body: memoryview, splices: List[Tuple[int, memoryview]]) -> None:
        self._pieces: List[memoryview] = []
        pos = 0
        for at, piece in splices:
            self._pieces += [body[pos:at], piece]
            pos = at
        self._pieces.append(body[pos:])
        self._index = 0
        self._offset = 0

    def readinto(self, target: Any) -> int:
        out = memoryview(target).cast("B")
        if out.nbytes >= hugepages.MIN_BYTES:  # a fresh bytes object being filled
            hugepages.advise(out)
        done = 0
        while done < out.nbytes and self._index < len(self._pieces):
            piece = self._pieces[self._index]
            k = min(piece.nbytes - self._offset, out.nbytes - done)
            out[done : done + k] = piece[self._offset : self._offset + k]
            done += k
            self._offset += k
            if self._offset >= piece.nbytes:
                self._index, self._offset = self._index + 1, 0
        return done

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = sum(p.nbytes for p in self._pieces[self._index :]) - self._offset
        if self._index < len(self._pieces) and self._offset + n <= self._pieces[self._index].nbytes:
            data = self._pieces[self._index][self._offset : self._offset + n].tobytes()  # the usual case
            self._offset += n
            return data
        buf = bytearray(n)
        return bytes(buf[: self.readinto(buf)])

    def readline(self) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n"):
            byte = self.read(1)
            if not byte:
                break
            line += byte
        return bytes(line)


def dumps_inline(obj: Any) -> bytes:
    """`obj` pickled whole, big buffers included: for the Manager dict, which keeps bytes
    (so values only cloudpickle can pickle are safe there too)."""
    try:
        file = io.BytesIO()
        _Pickler(file, 5).dump(obj)
        return file.getvalue()
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


def has_segments(message: Union[bytes, memoryview]) -> bool:
    """Whether a message refers to shared-memory segments (read from its header alone)."""
    return bool(_HEADER.unpack_from(message)[0])


def segments_of(message: Union[bytes, memoryview]) -> List[SegmentRef]:
    """The segments a message refers to, without loading it."""
    (n,) = _HEADER.unpack_from(message)
    return pickle.loads(memoryview(message)[_HEADER.size : _HEADER.size + n]) if n else []


CALL_FUNCTION_SIZE = struct.Struct("<I")
"""A call is ``[u32 size][the function, as dumps() made it][its arguments, likewise]``."""

_by_reference: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
_by_value: Dict[types.CodeType, Tuple[captures.Snapshot, bytes, types.FunctionType]] = {}
_BY_VALUE_KEPT = 256  # functions sent by value whose pickle is kept (see ``captures``)
_NO_ARGUMENTS = _NO_SEGMENTS + pickle.dumps(((), {}), protocol=5)


def dumps_call(
    f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any], cluster_id: str
) -> Tuple[bytes, List[SegmentRef]]:
    """Serialize a call; the function apart, so that an engine unpickles it only once.

    A module-level function pickles to its import path, always the same bytes:
    those are cached.  A function sent by value is pickled again unless the
    rule in ``captures`` says nothing it captures can have changed.
    """
    try:
        fblob, fsegments = function_blob(f, cluster_id)
        if args or kwargs:
            ablob, asegments = dumps((args, kwargs), cluster_id, what="the arguments")
        else:
            ablob, asegments = _NO_ARGUMENTS, []
    except SerializationError as exc:
        culprit = find_unpicklable(call_parts(f, args, kwargs))
        raise SerializationError(f"cannot send the call: cannot pickle {culprit or exc}") from None
    return CALL_FUNCTION_SIZE.pack(len(fblob)) + fblob + ablob, fsegments + asegments


def function_blob(f: Callable[..., Any], cluster_id: str) -> Tuple[bytes, List[SegmentRef]]:
    """`f` and its source file name, pickled (from a cache when that cannot have changed),
    and the segments of big buffers it captured."""
    if not isinstance(f, types.FunctionType):
        return _dumps_function(f, cluster_id)
    fblob = _by_reference.get(f)
    if fblob is not None:
        return fblob, []
    kept = _by_value.get(f.__code__)
    by_reference = (kept is None or kept[2] is not f) and captures.by_reference(f)  # the same function: by value still
    now = None if by_reference else captures.snapshot(f)
    if now is not None and kept is not None and captures.same(kept[0], now):
        return kept[1], []
    fblob, segments = _dumps_function(f, cluster_id)
    if segments:
        return fblob, segments
    if now is not None:
        if len(_by_value) >= _BY_VALUE_KEPT:
            _by_value.pop(next(iter(_by_value)))
        _by_value[f.__code__] = now, fblob, f
    elif by_reference:
        _by_reference[f] = fblob
    return fblob, []


def _dumps_function(f: Callable[..., Any], cluster_id: str) -> Tuple[bytes, List[SegmentRef]]:
    # cloudpickle renames code sent by value "<dynamic-code>"; the engine
    # restores the real file so that remote tracebacks show source lines.
    filename = getattr(getattr(f, "__code__", None), "co_filename", None)
    return dumps((f, filename), cluster_id, what="the function")


def find_unpicklable(parts: Iterable[Tuple[str, Any]]) -> Optional[str]:
    """Name the first of `parts` that cannot be pickled, with the reason; None if all can."""
    for name, obj in parts:
        try:
            _Pickler(io.BytesIO(), 5, buffer_callback=lambda buf: False).dump(obj)
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
