"""The notebook case: a function, a lambda and a closure defined in ``__main__``.

Users' functions live in a notebook or a script, i.e. in ``__main__``, and
cloudpickle pickles those by value (code, names, closure cells) on every call,
where a function of an importable module (``tasks.noop``) travels as a short
reference.  ``install()`` runs ``CELL`` in ``__main__``'s namespace, as a
notebook runs a cell, so the three no-ops really belong to ``__main__``
whichever entry point started the benchmarks; it must run before any pool
forks, so that a forked worker's ``__main__`` has them too (plain pickle sends
a ``__main__`` function by name).
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, Callable, Dict, Optional

import cloudpickle

from . import tasks

CELL = """
def bench_main_noop(*args):
    return None

bench_main_lambda = lambda *args: None  # noqa: E731

def _bench_make_closure():
    nothing = None

    def bench_main_closure(*args):
        return nothing

    return bench_main_closure

bench_main_closure = _bench_make_closure()
"""

MODULE, MAIN, LAMBDA, CLOSURE = "module", "main", "lambda", "closure"
KINDS = (MODULE, MAIN, LAMBDA, CLOSURE)
LABELS = {
    MODULE: "module function",
    MAIN: "`__main__` function",
    LAMBDA: "`__main__` lambda",
    CLOSURE: "`__main__` closure",
}

_installed: Dict[str, Callable[..., Any]] = {}


def install() -> Dict[str, Callable[..., Any]]:
    """The no-op of each kind, the ``__main__`` ones defined there (once)."""
    if not _installed:
        main = sys.modules["__main__"]
        exec(compile(CELL, "<benchmark notebook cell>", "exec"), vars(main))
        ns = vars(main)
        _installed.update(
            {
                MODULE: tasks.noop,
                MAIN: ns["bench_main_noop"],
                LAMBDA: ns["bench_main_lambda"],
                CLOSURE: ns["bench_main_closure"],
            }
        )
        for kind in (MAIN, LAMBDA, CLOSURE):
            f = _installed[kind]
            assert f.__module__ == "__main__" and f.__globals__ is ns, f"{kind} is not defined in __main__"
    return dict(_installed)


def pickled_sizes() -> Dict[str, Dict[str, Optional[int]]]:
    """Bytes of each no-op under cloudpickle (by value for ``__main__``) and plain pickle (None: cannot)."""
    out: Dict[str, Dict[str, Optional[int]]] = {}
    for kind, f in install().items():
        try:
            plain: Optional[int] = len(pickle.dumps(f, protocol=5))
        except (pickle.PicklingError, AttributeError, TypeError):
            plain = None
        out[kind] = {"cloudpickle": len(cloudpickle.dumps(f, protocol=5)), "pickle": plain}
    return out
