"""Task code written for ipyparallel (or IPython 2/3) publishes through localpar.

Installed in each engine process when it starts (never in the client): inside a
localpar engine, ``from ipyparallel.datapub import publish_data`` and the IPython 2/3
path ``from IPython.kernel.zmq.datapub import publish_data`` both give
`localpar.datapub.publish_data`, so a notebook written for ipyparallel, or IPython's
own "Data Publication API" notebook, runs with only its ``Client`` import changed.

A meta-path finder serves the two ``datapub`` modules as aliases; their parent packages
are the real ones when installed (``ipyparallel``, ``IPython``) and empty stand-ins
otherwise (``IPython.kernel`` and ``IPython.kernel.zmq`` no longer exist in IPython).

An installed ``ipyparallel`` is not run for the alias: importing it loads the whole package
(zmq, traitlets, its client; 0.6 s on a fresh engine) only for task code to get localpar's
``publish_data``.  So, unless it is loaded already, the package is a *deferred* module: the
real package's module object, with its search path (its other submodules import as usual),
whose code runs the first time anything asks it for a name it lacks (``ipyparallel.Client``,
``from ipyparallel import Cluster``, ``__version__``); its ``__file__`` and ``__path__`` are
there from the start, and other dunder lookups (the import system's probes) run nothing.
The client process has none of this: the finder exists only in engines.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from typing import Any, Optional, Sequence

ALIASES = ("ipyparallel.datapub", "IPython.kernel.zmq.datapub")
"""Modules that are localpar's datapub inside a localpar engine."""

_PARENTS = {"ipyparallel", "IPython", "IPython.kernel", "IPython.kernel.zmq"}
_DEFERRED = {"ipyparallel"}  # heavy parents run only once task code uses more than the alias
_run_lock = threading.RLock()  # one thread runs a deferred package
_PUBLIC_DUNDERS = {"__version__", "__all__"}  # dunder names a package's users ask for


class DeferredPackage(types.ModuleType):
    """An installed package whose code has not run yet (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:  # only for names the module lacks
        if name.startswith("__") and name not in _PUBLIC_DUNDERS:
            raise AttributeError(name)  # the import system's own probes, while it sets the module up
        with _run_lock:
            if type(self) is DeferredPackage:
                real: importlib.machinery.ModuleSpec = self.__dict__["__localpar_real_spec__"]
                self.__class__ = types.ModuleType  # type: ignore[assignment]  # an ordinary module from here on
                del self.__dict__["__localpar_real_spec__"]
                self.__spec__ = real
                self.__loader__ = real.loader
                assert real.loader is not None
                try:
                    real.loader.exec_module(self)
                except BaseException:
                    sys.modules.pop(self.__name__, None)  # as a failed import leaves it: not imported
                    raise
        return object.__getattribute__(self, name)


class _DatapubLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        real = spec.loader_state
        if real is not None:  # a deferred package: the real one's search path, its code not run
            module = DeferredPackage(spec.name)
            module.__dict__["__localpar_real_spec__"] = real
            module.__dict__.update(__file__=real.origin, __cached__=real.cached)  # a look at them runs nothing
            return module
        return None  # a fresh module: localpar.datapub itself keeps its own name and spec

    def exec_module(self, module: types.ModuleType) -> None:
        from . import datapub

        if module.__spec__ is not None and module.__spec__.submodule_search_locations is not None:
            return  # a stand-in parent package (empty), or a deferred one (run later)
        module.publish_data = datapub.publish_data  # type: ignore[attr-defined]
        module.report_progress = datapub.report_progress  # type: ignore[attr-defined]
        module.__all__ = ["publish_data"]  # type: ignore[attr-defined]
        module.__doc__ = "localpar's publish_data under the name ipyparallel/IPython gave it (localpar.compat)."


class DatapubFinder(importlib.abc.MetaPathFinder):
    """Finds the `ALIASES`, and stand-ins for their parent packages when those are missing."""

    loader = _DatapubLoader()

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[types.ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname in ALIASES:
            return importlib.machinery.ModuleSpec(fullname, self.loader)
        if fullname not in _PARENTS:
            return None
        real = self._found_elsewhere(fullname, path)
        if real is None:  # missing: an empty stand-in
            return importlib.machinery.ModuleSpec(fullname, self.loader, is_package=True)
        if fullname in _DEFERRED and real.loader is not None and real.submodule_search_locations is not None:
            spec = importlib.machinery.ModuleSpec(fullname, self.loader, loader_state=real, is_package=True)
            spec.submodule_search_locations = list(real.submodule_search_locations)
            return spec
        return None  # the real one, as usual

    def _found_elsewhere(
        self, fullname: str, path: Optional[Sequence[str]]
    ) -> Optional[importlib.machinery.ModuleSpec]:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(fullname, path)
            except (ImportError, ValueError):
                continue
            if spec is not None:
                return spec
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path``; replace aliases a forked engine inherited."""
    if not any(isinstance(f, DatapubFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, DatapubFinder())
    for name in ALIASES:
        if name in sys.modules:  # imported by the client before the fork: re-import as the alias
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            module: Any = importlib.import_module(name)
            if parent in sys.modules:
                setattr(sys.modules[parent], child, module)
