"""Task code written for ipyparallel (or IPython 2/3) publishes through localpar.

Installed in each engine process when it starts (never in the client): inside a
localpar engine, ``from ipyparallel.datapub import publish_data`` and the IPython 2/3
path ``from IPython.kernel.zmq.datapub import publish_data`` both give
`localpar.datapub.publish_data`, so a notebook written for ipyparallel, or IPython's
own "Data Publication API" notebook, runs with only its ``Client`` import changed.

A meta-path finder serves the two ``datapub`` modules as aliases; their parent packages
are the real ones when installed (``ipyparallel``, ``IPython``) and empty stand-ins
otherwise (``IPython.kernel`` and ``IPython.kernel.zmq`` no longer exist in IPython).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, Optional, Sequence

ALIASES = ("ipyparallel.datapub", "IPython.kernel.zmq.datapub")
"""Modules that are localpar's datapub inside a localpar engine."""

_PARENTS = {"ipyparallel", "IPython", "IPython.kernel", "IPython.kernel.zmq"}


class _DatapubLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return None  # a fresh module: localpar.datapub itself keeps its own name and spec

    def exec_module(self, module: types.ModuleType) -> None:
        from . import datapub

        if module.__spec__ is not None and module.__spec__.submodule_search_locations is not None:
            return  # a stand-in parent package: empty
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
        if fullname in _PARENTS and not self._found_elsewhere(fullname, path):
            return importlib.machinery.ModuleSpec(fullname, self.loader, is_package=True)
        return None

    def _found_elsewhere(self, fullname: str, path: Optional[Sequence[str]]) -> bool:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                if finder.find_spec(fullname, path) is not None:
                    return True
            except (ImportError, ValueError):
                continue
        return False


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
