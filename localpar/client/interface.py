"""Two interfaces named so that no module reaches into another's internals.

`ClusterAPI`: what an AsyncResult may ask of the cluster that runs it (the `Client`).

The views as the integrations see them: what ``%px``, ``view.executor`` and the joblib backend
may use of a view and its client, and nothing else.

The views create the integrations (``view.activate()``, ``view.executor``,
``view.register_joblib_backend()``), so the integrations must not import the views back, not
even for type hints: they are typed against these protocols, which `DirectView`,
`LoadBalancedView` and `Client` satisfy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .ledger import Ledger


class ClusterAPI(Protocol):
    """What an AsyncResult may ask of its cluster: the ledger it waits on, abort and cancel."""

    @property
    def ledger(self) -> Ledger: ...

    def abort(self, jobs: Any = None, targets: Any = None, block: Optional[bool] = None) -> None: ...

    def cancel_unsent(self, ar: AsyncResult) -> bool: ...


class ClientAPI(Protocol):
    def activate(self, targets: Any = "all", suffix: str = "") -> Any: ...


class TaskViewAPI(Protocol):
    """What the executor and the joblib backend use: any view."""

    block: bool
    client: Any
    lazy_imap: bool  # imap consumes its input as tasks finish (LoadBalancedView) or up front

    def imap(self, f: Callable[..., Any], *sequences: Any, **options: Any) -> Any: ...

    def __len__(self) -> int: ...

    def apply_async(self, f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult: ...

    def map_async(self, f: Callable[..., Any], *sequences: Any, **options: Any) -> AsyncResult: ...

    def abort(self, jobs: Any = None, targets: Any = None, block: Optional[bool] = None) -> None: ...


class ViewAPI(TaskViewAPI, Protocol):
    """What the ``%px`` magics use: a DirectView."""

    targets: Any

    def execute(
        self, code: str, silent: bool = True, targets: Any = None, block: Optional[bool] = None, label: Any = None
    ) -> Any: ...

    def interrupt(self) -> None: ...
