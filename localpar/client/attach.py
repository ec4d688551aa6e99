"""A second Client on a cluster already open in this process: ``Client(profile=name)``.

ipyparallel's notebooks open a second client on a running cluster with
``ipp.Client(profile="name")`` (or ``cluster_id=``): it connects to the controller, shares
its engines and its Hub (the task database), and keeps its own ``history`` and
``results``; its ``close()`` closes its sockets only.  localpar has no controller to
connect to, so the analogue lives in one process:

* ``Client(n, profile="name")`` starts a cluster and names it; one open cluster per name.
* ``Client(profile="name")`` (no `n`) or ``Client(cluster_id=rc.cluster_id)`` *attaches*
  to the open cluster of that name or id: a Client object over the same engines, ledger,
  collector, balancer and task database (``SHARED``), with its own ``history``,
  ``results``, ``block`` and closed state (``OWN``).  No cluster of that name or id open
  here: an ``OSError``, as ipyparallel raises when it finds no connection file.  Options
  that configure a new cluster (``memory_limit=``...) are refused when attaching.
* An attached Client's ``close()`` detaches it only (its further calls raise
  `ClientClosedError`); the cluster runs on.  The Client that started the cluster (its
  ``owner``) closes it, and then every attached Client refuses calls with
  `ClientClosedError` too.  An attached Client holds its owner, so the cluster is not
  garbage-collected while an attached Client is in use.

Nothing crosses processes: attaching is a lookup in this process's registry (``registry``).

Ownership: an `Attachment` is its Client's; its `closed` flag is written once (False to
True) by `detach` and read by any thread: a call racing with ``close()`` either runs or is
refused, as with the owner's own close.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional

from ..errors import ClientClosedError
from . import registry

SHARED = frozenset(
    {"memory_limit", "restart_dead", "_oversubscribe", "start_method", "_ctx", "cluster_id", "_taskdb",
     "_store", "_authkey", "_lifeline", "_queue", "_spin_hint", "_ledger", "_collector", "_cpu_meter",
     "_start_lock", "_balancer", "_cluster", "profile"}
)  # fmt: skip
"""The owner's attributes an attached Client uses as they are: the cluster and its task database."""

OWN = frozenset(
    {"history", "_results", "_attachment", "_finalizer", "_db_finalizer", "cluster", "block", "main_globals"}
)
"""Attributes each Client has of its own (an attached Client makes new ones, has none, or has the
class default: ``cluster``, the `localpar.Cluster` that started the owner; ``block`` and
``main_globals``, set by the user on one Client)."""

ATTACH_ARGS = frozenset({"self", "n", "profile", "cluster_id"})


class Attachment:
    """How a Client holds its cluster: as the owner (`owner` None) or attached to `owner`."""

    def __init__(self, owner: Any = None) -> None:
        self.owner = owner  # the Client that started the cluster (a strong reference), or None
        self.closed = False  # an attached Client's own close()

    def detach(self) -> bool:
        """``close()`` of an attached Client: True (it is closed now, the cluster runs on); the owner: False."""
        if self.owner is None:
            return False
        self.closed = True
        return True

    def check_usable(self, cluster: Any) -> None:
        """Raise `ClientClosedError` if this Client may not be used (see the module docstring)."""
        if self.owner is not None:
            if self.closed:
                raise ClientClosedError(
                    f"this Client is closed (it was attached to cluster {cluster.cluster_id}, "
                    "which the Client that started it still runs)"
                )
            if cluster.closed:
                raise ClientClosedError(
                    f"cluster {cluster.cluster_id} was closed by the Client that started it; "
                    "this attached Client cannot be used any more"
                )
        cluster.check_usable()


def wants_attach(n: Optional[int], profile: Optional[str], cluster_id: Optional[str]) -> bool:
    """``Client(profile=...)`` or ``Client(cluster_id=...)`` without `n`: attach (else start)."""
    if n is None and (profile is not None or cluster_id is not None):
        return True
    if cluster_id is not None:
        raise TypeError(
            f"Client({n}, cluster_id={cluster_id!r}): cluster_id= attaches to an open cluster (without n); "
            "a new cluster's id is chosen by localpar (name it with profile=)"
        )
    if profile is not None and (not isinstance(profile, str) or not profile):
        raise TypeError(f"profile must be a non-empty str, got {profile!r}")
    return False


def find_owner(init: Callable[..., Any], given: Dict[str, Any]) -> Any:
    """The open Client that started the cluster ``Client(**given)`` attaches to.

    `init` is ``Client.__init__`` and `given` its arguments: an option that configures a
    new cluster is refused (ValueError); no such open cluster is an ``OSError``."""
    defaults = {k: p.default for k, p in inspect.signature(init).parameters.items() if k not in ATTACH_ARGS}
    options = sorted(k for k, default in defaults.items() if given.get(k, default) != default)
    profile, cluster_id = given.get("profile"), given.get("cluster_id")
    what = " and ".join(f"{k}={v!r}" for k, v in (("profile", profile), ("cluster_id", cluster_id)) if v is not None)
    if options:
        raise ValueError(
            f"Client({what}) attaches to an open cluster; {', '.join(options)} configure(s) a new one "
            "and belong to the Client that starts it (Client(n, profile=..., ...))"
        )
    owner = registry.find_open(profile, cluster_id)
    if owner is None:
        open_now = ", ".join(registry.describe_open()) or "none"
        raise OSError(
            f"no open localpar cluster with {what} in this process (open clusters: {open_now}); "
            "start one with Client(n, profile=name) first"
        )
    return owner


def check_name_free(profile: Optional[str]) -> None:
    """``Client(n, profile=name)``: refuse a name an open cluster of this process already has."""
    if profile is not None and registry.find_open(profile, None) is not None:
        raise ValueError(
            f"a cluster with profile={profile!r} is already open in this process; "
            f"Client(profile={profile!r}) attaches to it, or close it first"
        )
