"""pytest plugin (registered through the ``pytest11`` entry point): cluster fixtures.

- ``localpar_client``: one Client for the whole session (``--localpar-engines N`` or the
  ini option ``localpar_engines``, default 2), closed at session end whatever happened.
- ``localpar_view``: a fresh non-blocking ``DirectView`` on all engines; after the test,
  its unfinished work is aborted, waited for (``localpar_settle_timeout`` seconds, default
  1), interrupted if need be, and dead engines are replaced, so that one test cannot leak
  work or missing engines into the next.
- ``localpar_cluster``: a factory, ``localpar_cluster(n=2, **kwargs) -> Client``, for tests
  that need their own cluster; every Client it made is closed at teardown.

localpar is imported only when a fixture is used, so merely having the plugin
installed costs other test suites nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Set

import pytest

if TYPE_CHECKING:
    from ..client.client import Client
    from ..client.view import DirectView

DEFAULT_ENGINES = 2
DEFAULT_SETTLE_TIMEOUT = 1.0
"""Seconds a test's running tasks get after it ends before they are interrupted (ini: localpar_settle_timeout)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("localpar", "localpar cluster fixtures")
    group.addoption(
        "--localpar-engines",
        type=int,
        default=None,
        dest="localpar_engines",
        metavar="N",
        help=f"engines in the session cluster of the localpar_client fixture (default: ini or {DEFAULT_ENGINES})",
    )
    parser.addini(
        "localpar_engines", help="engines in the localpar_client session cluster", default=str(DEFAULT_ENGINES)
    )
    parser.addini(
        "localpar_settle_timeout",
        help=f"seconds localpar_view waits for a test's unfinished tasks before interrupting them "
        f"(default: {DEFAULT_SETTLE_TIMEOUT:g})",
        default=str(DEFAULT_SETTLE_TIMEOUT),
    )


def engine_count(config: pytest.Config) -> int:
    """The session cluster's size: the command line wins over the ini file."""
    n = config.getoption("localpar_engines")
    if n is None:
        raw = config.getini("localpar_engines")
        try:
            n = int(raw)
        except ValueError:
            raise pytest.UsageError(f"localpar_engines must be an integer, got {raw!r}") from None
    if n < 1:
        raise pytest.UsageError(f"the localpar cluster needs at least one engine, got {n}")
    return n


def pytest_configure(config: pytest.Config) -> None:
    engine_count(config)  # a bad value is a usage error at once, not a fixture error in every test


def pytest_report_header(config: pytest.Config) -> str:
    return f"localpar: {engine_count(config)} engines for localpar_client"


@pytest.fixture(scope="session")
def localpar_client(request: pytest.FixtureRequest) -> Iterator[Client]:
    """A Client shared by the whole session, closed at its end even if tests failed."""
    from ..client.client import Client

    client = Client(engine_count(request.config))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def localpar_view(localpar_client: Client, request: pytest.FixtureRequest) -> Iterator[DirectView]:
    """A fresh ``c[:]`` with ``block=False``; the test's leftover work is cleaned up after it."""
    expected = localpar_client.ids
    view = localpar_client[:]
    view.block = False
    yield view
    settle(localpar_client, expected, float(request.config.getini("localpar_settle_timeout")))


def settle(client: Client, expected: List[int], timeout: float) -> None:
    """Leave `client` idle with the engines `expected`: abort, wait, interrupt, replace.

    Queued tasks are dropped; running ones get `timeout` seconds, then a
    KeyboardInterrupt, then a restart of their engine.
    """
    if client.closed:
        return
    if client.outstanding:
        client.abort()
        if not client.wait(timeout=timeout):
            client.interrupt()
            if not client.wait(timeout=min(timeout, 5.0)):
                for engine_id in sorted(busy_engines(client) & set(client.ids)):
                    client.restart_engine(engine_id)
                client.wait(timeout=5.0)
    for engine_id in sorted(set(expected) - set(client.ids)):
        client.restart_engine(engine_id)
    client.purge_results("all")


def busy_engines(client: Client) -> Set[int]:
    """The engines still running (or holding) a task of `client`."""
    return {i for i, s in client.queue_status().items() if isinstance(i, int) and s["queue"]}


@pytest.fixture
def localpar_cluster() -> Iterator[Callable[..., Client]]:
    """``localpar_cluster(n=2, **kwargs)`` starts a Client; all are closed at teardown."""
    from ..client.client import Client

    clients: List[Client] = []

    def start(n: int = DEFAULT_ENGINES, **kwargs: Any) -> Client:
        client = Client(n, **kwargs)
        clients.append(client)
        return client

    try:
        yield start
    finally:
        errors = []
        for client in reversed(clients):
            try:
                client.close()
            except Exception as exc:  # close the others anyway
                errors.append(exc)
        if errors:
            raise errors[0]
