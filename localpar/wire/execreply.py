"""``ExecuteReply``: what ``view.execute(code, silent=False)`` returns per engine."""

from __future__ import annotations

from typing import Any, Dict, Optional


class ExecuteReply:
    """The outcome of running a cell on one engine: the final expression's value as
    ``execute_result`` (``{'data': {'text/plain': repr}, 'execution_count': n}``, or None)
    and what the cell printed (``stdout``)."""

    def __init__(self, execution_count: int, execute_result: Optional[Dict[str, Any]], stdout: str = "") -> None:
        self.execution_count = execution_count
        self.execute_result = execute_result
        self.stdout = stdout

    @property
    def text(self) -> str:
        if self.execute_result is None:
            return ""
        return str(self.execute_result["data"].get("text/plain", ""))

    def __repr__(self) -> str:
        return f"<ExecuteReply[{self.execution_count}]: {self.text}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecuteReply):
            return NotImplemented
        return (self.execution_count, self.execute_result) == (other.execution_count, other.execute_result)

    __hash__ = None  # type: ignore[assignment]
