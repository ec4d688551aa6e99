"""A publication's values, pickled so that one the client cannot unpickle loses only its key.

A publication (``publish_data``'s dict, merged) travels as one message.  Builtin scalars and
numpy arrays of plain dtypes (``serialization.plain_data``) unpickle wherever localpar runs;
anything else may not: an object of a module only the engine has, a ``__setstate__`` that
raises.  So a publication with such values travels as `Pieced`: the plain values as they
are, each other value pickled on its own.  The client unpickles those one by one
(`unpieced`): a value that fails is left out and named, the other keys are applied.
A publication of plain values alone, the common case, is pickled exactly as before.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ..errors import SerializationError
from . import sharedmem
from .serialization import dumps, dumps_inline, loads_inline, plain_data
from .sharedmem import SegmentRef


class Pieced(NamedTuple):
    """A publication with values pickled on their own (`pieces`: key -> pickle) beside the
    plain ones (`plain`)."""

    plain: Dict[Any, Any]
    pieces: Dict[Any, bytes]


def dumps_data(
    data: Dict[Any, Any], cluster_id: str, what: str, pool: Optional[sharedmem.SegmentPool] = None
) -> Tuple[bytes, List[SegmentRef]]:
    """`data` for ``serialization.loads`` then `unpieced`; raises SerializationError as ``dumps`` does."""
    plain = plain_data(data)
    if plain:
        return dumps(data, cluster_id, what=what, pool=pool, plain=plain)
    kept: Dict[Any, Any] = {}
    pieces: Dict[Any, bytes] = {}
    for key, value in data.items():
        if plain_data(value):
            kept[key] = value
        else:
            pieces[key] = dumps_inline(value)
    return dumps(Pieced(kept, pieces), cluster_id, what=what, pool=pool)


def unpieced(data: Any) -> Tuple[Any, List[str]]:
    """The publication that `data` (from ``loads``) carries, and why each value left out was
    (it could not be unpickled here); what `dumps_data` sent whole comes back as it is."""
    if type(data) is not Pieced:
        return data, []
    merged = dict(data.plain)
    errors = []
    for key, blob in data.pieces.items():
        try:
            merged[key] = loads_inline(blob)
        except SerializationError as exc:
            errors.append(f"published value {key!r} was dropped: {exc}")
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: this value's, not the collector's
            errors.append(f"published value {key!r} was dropped: cannot unpickle: {type(exc).__name__}: {exc}")
    return merged, errors
