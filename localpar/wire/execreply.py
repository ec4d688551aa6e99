"""``ExecuteReply``: the value ``view.execute(code)`` gives per engine, as ipyparallel's.

Made on the engine with the cell's execution count and its execute_result (the
mime bundle of the last expression, or None); the client fills in the rest when
the task completes (``fill``): what the cell printed, its displays, the engine.
It shows itself as ipyparallel's does: ``Out[0:3]: 42`` in IPython and rich in
Jupyter (its ``_repr_*_`` give the result's own mime data).  Importing this
module imports no IPython.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

_RED, _NORMAL = "\x1b[0;31m", "\x1b[0m"  # IPython's colours for ``Out[...]``


class ExecuteReply:
    """The outcome of running a cell on one engine.

    ``execution_count``; ``execute_result`` (``{'data': {mime: ...}, 'metadata': {...},
    'execution_count': n}``, or None for a silent cell or one without a final
    expression); ``stdout``, ``stderr`` and ``outputs`` (its displays); ``metadata``
    (the task's, as a dict; ``reply['engine_id']`` and ``reply.engine_id`` read it).
    """

    def __init__(self, execution_count: int, execute_result: Optional[Dict[str, Any]], stdout: str = "") -> None:
        self.execution_count = execution_count
        self.execute_result = execute_result
        self.metadata: Dict[str, Any] = {
            "execute_result": execute_result,
            "stdout": stdout,
            "stderr": "",
            "outputs": [],
        }

    def fill(self, **fields: Any) -> None:
        """The client's part, once the task is complete: engine_id, msg_id, stdout, stderr, outputs..."""
        self.metadata.update(fields)

    # -- the task's metadata, as attributes and items -----------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self.metadata[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key == "metadata":
            raise AttributeError(key)
        try:
            return self.metadata[key]
        except KeyError:
            raise AttributeError(key) from None

    @property
    def stdout(self) -> str:
        return str(self.metadata.get("stdout", ""))

    @stdout.setter
    def stdout(self, text: str) -> None:
        self.metadata["stdout"] = text

    # -- the result's rich data -----------------------------------------------------------------
    @property
    def data(self) -> Dict[str, Any]:
        """The execute_result's mime bundle (``{}`` without one)."""
        return dict(self.execute_result.get("data", {})) if self.execute_result else {}

    @property
    def _metadata(self) -> Dict[str, Any]:
        return dict(self.execute_result.get("metadata", {})) if self.execute_result else {}

    @property
    def text(self) -> str:
        return str(self.data.get("text/plain", ""))

    @property
    def outputs(self) -> List[Dict[str, Any]]:
        return list(self.metadata.get("outputs", []))

    def _repr_mime_(self, mime: str) -> Any:
        data = self.data
        if mime not in data:
            return None
        metadata = self._metadata
        return (data[mime], metadata[mime]) if mime in metadata else data[mime]

    def _repr_html_(self) -> Any:
        return self._repr_mime_("text/html")

    def _repr_markdown_(self) -> Any:
        return self._repr_mime_("text/markdown")

    def _repr_latex_(self) -> Any:
        return self._repr_mime_("text/latex")

    def _repr_json_(self) -> Any:
        return self._repr_mime_("application/json")

    def _repr_javascript_(self) -> Any:
        return self._repr_mime_("application/javascript")

    def _repr_png_(self) -> Any:
        return self._repr_mime_("image/png")

    def _repr_jpeg_(self) -> Any:
        return self._repr_mime_("image/jpeg")

    def _repr_svg_(self) -> Any:
        return self._repr_mime_("image/svg+xml")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        data = self.data
        if "text/plain" in data:
            data["text/plain"] = self._plaintext()
        return data, self._metadata

    def _plaintext(self) -> str:
        """``Out[engine:n]: text``, in red when IPython draws in colour."""
        text = self.text
        if not text:
            return ""
        if "\n" in text and not text.startswith("\n"):
            text = "\n" + text  # a multi-line repr starts on its own line
        out = normal = ""
        ipython = sys.modules.get("IPython")  # never imported for this
        shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
        if shell is not None and str(getattr(shell, "colors", "NoColor")).lower() != "nocolor":
            out, normal = _RED, _NORMAL
        return f"{out}Out[{self.metadata.get('engine_id')}:{self.execution_count}]: {normal}{text}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self._plaintext())

    def display(self) -> None:
        """Show the result in IPython (as ``display(reply)``)."""
        from IPython.display import display

        display(self)

    def __repr__(self) -> str:
        text = self.text
        if len(text) > 32:
            text = text[:29] + "..."
        return f"<ExecuteReply[{self.execution_count}]: {text}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecuteReply):
            return NotImplemented
        return (self.execution_count, self.execute_result) == (other.execution_count, other.execute_result)

    __hash__ = None  # type: ignore[assignment]
