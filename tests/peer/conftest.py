"""The peer suite: ipyparallel 9.2's client-facing tests, run against localpar.

One localpar cluster serves the whole suite (`cluster`, closed at the end); engines a
test crashes are replaced before the next test.  A test that cannot apply to localpar is
skipped here, with a reason that names a row of the "Left out" table of docs/ipyparallel.md
(or says "needs core:" for what waits on the engine loop's rewrite).

The `ipython` fixtures are adapted from ipyparallel's tests/conftest.py.
Copyright (c) IPython Development Team. Distributed under the terms of the Modified BSD
License (tests/peer/COPYING.md).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Iterator

import pytest

from . import clienttest

# The reasons, one per row of docs/ipyparallel.md's "Left out" table (or "needs core: ...").
ABORT_AFTER_ERROR = "an engine does not abort the tasks queued behind one that raised (ipyparallel's engines do)"
ZMQ = "no ZeroMQ: track=True/MessageTracker, connection security, hostname checks"
PICKLERS = (
    "a __main__ function's client globals stay in the engine namespace after its call (localpar sets them "
    "there), so use_pickle() cannot make a name the client sent undefined again"
)
DASK = "no become_dask/become_distributed"
BUILD_TARGETS = "private ipyparallel internals (_build_targets, _engines, _outstanding_dict, _io_loop, metadata)"
REQUIRE_DIRECT = (
    "asserts that a @require'd function applied on a DirectView returns [] (what ipyparallel 9.2 gives); "
    "localpar returns each engine's value"
)
LEAST_LOADED = (
    "the balancer gives a task to the least busy engine, the first of the idle ones (ipyparallel: the least "
    "recently used), so that the engine spinning for the next call takes it: the test loops until a task "
    "lands on another engine"
)

SKIPPED = {
    # ipyparallel's own test body is `pass` ("to be written"): nothing to run, nothing to count
    "TestClient::test_result_status": "empty in ipyparallel itself (its body is `pass`)",
    # test_view.py
    "TestView::test_apply_tracked": ZMQ,
    "TestView::test_push_tracked": ZMQ,
    "TestView::test_scatter_tracked": ZMQ,
    "TestView::test_use_cloudpickle": PICKLERS,
    # test_asyncresult.py
    "TestAsyncResult::test_not_single_result": BUILD_TARGETS,
    "TestAsyncResult::test_owner_pop": BUILD_TARGETS,
    "TestAsyncResult::test_wait_for_send": ZMQ,
    # test_client.py
    "TestClient::test_curve": ZMQ,
    "TestClient::test_view_indexing": BUILD_TARGETS,
    "TestClient::test_outstanding": BUILD_TARGETS,
    "TestClient::test_targets": BUILD_TARGETS,
    "TestClient::test_ids_list": BUILD_TARGETS,
    "TestClient::test_purge_local_results": BUILD_TARGETS,
    "TestClient::test_purge_all_local_results": BUILD_TARGETS,
    "TestClient::test_purge_everything": ZMQ,  # client.session.digest_history
    "TestClient::test_become_dask": DASK,
    "TestClient::test_warning_on_hostname_match": ZMQ,
    "TestClient::test_local_ip_true_doesnt_trigger_warning": ZMQ,
    # test_lbview.py
    "TestLoadBalancedView::test_impossible_dependency": LEAST_LOADED,
    "TestView::test_cloudpickle_require": REQUIRE_DIRECT,
    # test_magics.py
    "TestParallelMagics::test_autopx_nonblocking": ABORT_AFTER_ERROR,
    # test_executor.py
    # test_joblib.py
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/peer/" not in str(item.path).replace(os.sep, "/"):
            continue
        key = "::".join(item.nodeid.split("::")[1:])
        if key in SKIPPED:
            item.add_marker(pytest.mark.skip(reason=SKIPPED[key]))
        item.add_marker(pytest.mark.timeout(60))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    """One localpar cluster for the whole peer suite (ipyparallel starts a controller and engines)."""
    from localpar import Client

    with Client(2, profile="iptest") as client:  # what ipp.Client(profile="iptest") attaches to
        clienttest.CLUSTER.update(client=client, base=list(client.ids))
        try:
            yield client
        finally:
            clienttest.CLUSTER.clear()


@pytest.fixture(scope="module")
def ipython() -> Iterator[Any]:
    """A terminal IPython shell (no colours, a throw-away history file)."""
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from traitlets.config import Config

    config = Config()
    config.TerminalInteractiveShell.colors = "NoColor"
    config.TerminalInteractiveShell.autocall = 0
    config.TerminalInteractiveShell.simple_prompt = True
    with tempfile.TemporaryDirectory(suffix=".ipython") as ipython_dir:
        config.HistoryManager.hist_file = ":memory:"
        old = os.environ.get("IPYTHONDIR")
        os.environ["IPYTHONDIR"] = ipython_dir
        shell = TerminalInteractiveShell.instance(config=config)
        try:
            yield shell
        finally:
            TerminalInteractiveShell.clear_instance()
            if old is None:
                os.environ.pop("IPYTHONDIR", None)
            else:
                os.environ["IPYTHONDIR"] = old


@pytest.fixture()
def ipython_interactive(ipython: Any) -> Iterator[Any]:
    """Activate IPython's builtin hooks for the duration of the test."""
    with ipython.builtin_trap:
        yield ipython
