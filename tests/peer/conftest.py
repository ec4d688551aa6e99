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
HUB = "no Hub: get_result, db_query, hub_history, queue_status, resubmit, purge_hub_results, history"
CLUSTER_MGMT = "no Cluster/ipcluster/connection files: engines are children of the Client (wait_for_engines, shutdown)"
ZMQ = "no ZeroMQ: track=True/MessageTracker, connection security, hostname checks"
DEPENDENCIES = "no task dependencies: after/follow/retries/timeout on LoadBalancedView"
PICKLERS = "serialization is always cloudpickle: no use_pickle/use_cloudpickle/use_dill"
BROADCAST = "no BroadcastView"
DASK = "no become_dask/become_distributed"
IMAP = "no view.imap / view.history (a client keeps no unbounded task list)"
ENGINE_INFO = "engine_info holds engine_id, engine_pid, msg_id (no engine_uuid/method)"
BUILD_TARGETS = "private ipyparallel internals (_build_targets, _engines, _outstanding_dict, _io_loop, metadata)"
SPLIT = "needs core: per-task futures (split() parts are an AsyncResult subclass, not AsyncResult itself)"
DEFAULT_JOBLIB = "no default cluster for a bare ipp.register_joblib_backend(): register a view"

SKIPPED = {
    # ipyparallel's own test body is `pass` ("to be written"): nothing to run, nothing to count
    "TestClient::test_result_status": "empty in ipyparallel itself (its body is `pass`)",
    # test_view.py
    "TestView::test_get_result": HUB,
    "TestView::test_apply_tracked": ZMQ,
    "TestView::test_push_tracked": ZMQ,
    "TestView::test_scatter_tracked": ZMQ,
    "TestView::test_compositeerror_truncate": HUB,
    "TestView::test_use_cloudpickle": PICKLERS,
    "TestView::test_cloudpickle_push_pull": PICKLERS,
    "TestView::test_cloudpickle_require": DEPENDENCIES,
    "TestView::test_block_kwarg": BROADCAST,
    # test_asyncresult.py
    "TestAsyncResult::test_hubresult_timestamps": HUB,
    "TestAsyncResult::test_not_single_result": BUILD_TARGETS,
    "TestAsyncResult::test_owner_pop": BUILD_TARGETS,
    "TestAsyncResult::test_wait_for_send": ZMQ,
    "TestAsyncResult::test_split_map_result": SPLIT,
    "TestAsyncResult::test_error_engine_info_apply": ENGINE_INFO,
    "TestAsyncResult::test_error_engine_info_execute": ENGINE_INFO,
    # test_client.py
    "TestClient::test_curve": ZMQ,
    "TestClient::test_view_indexing": BUILD_TARGETS,
    "TestClient::test_outstanding": BUILD_TARGETS,
    "TestClient::test_targets": BUILD_TARGETS,
    "TestClient::test_get_result": HUB,
    "TestClient::test_get_execute_result": HUB,
    "TestClient::test_ids_list": BUILD_TARGETS,
    "TestClient::test_queue_status": HUB,
    "TestClient::test_shutdown": CLUSTER_MGMT,
    "TestClient::test_db_query_dt": HUB,
    "TestClient::test_db_query_keys": HUB,
    "TestClient::test_db_query_default_keys": HUB,
    "TestClient::test_db_query_msg_id": HUB,
    "TestClient::test_db_query_get_result": HUB,
    "TestClient::test_db_query_in": HUB,
    "TestClient::test_hub_history": HUB,
    "TestClient::test_resubmit": HUB,
    "TestClient::test_resubmit_chain": HUB,
    "TestClient::test_resubmit_header": HUB,
    "TestClient::test_resubmit_aborted": HUB,
    "TestClient::test_resubmit_inflight": HUB,
    "TestClient::test_resubmit_badkey": HUB,
    "TestClient::test_purge_hub_results": HUB,
    "TestClient::test_purge_local_results": BUILD_TARGETS,
    "TestClient::test_purge_all_hub_results": HUB,
    "TestClient::test_purge_all_local_results": BUILD_TARGETS,
    "TestClient::test_purge_all_results": HUB,
    "TestClient::test_purge_everything": HUB,
    "TestClient::test_become_dask": DASK,
    "TestClient::test_warning_on_hostname_match": ZMQ,
    "TestClient::test_local_ip_true_doesnt_trigger_warning": ZMQ,
    "TestClient::test_wait_for_engines": CLUSTER_MGMT,
    # test_lbview.py
    "TestLoadBalancedView::test_imap_max_outstanding": IMAP,
    "TestLoadBalancedView::test_imap_infinite": IMAP,
    "TestLoadBalancedView::test_imap_unordered": IMAP,
    "TestLoadBalancedView::test_imap_return_exceptions": IMAP,
    "TestLoadBalancedView::test_retries": DEPENDENCIES,
    "TestLoadBalancedView::test_short_timeout": DEPENDENCIES,
    "TestLoadBalancedView::test_invalid_dependency": DEPENDENCIES,
    "TestLoadBalancedView::test_impossible_dependency": DEPENDENCIES,
    "TestLoadBalancedView::test_follow": DEPENDENCIES,
    "TestLoadBalancedView::test_after": DEPENDENCIES,
    # test_magics.py
    "TestParallelMagics::test_autopx_blocking": HUB,
    "TestParallelMagics::test_autopx_nonblocking": HUB,
    # test_executor.py
    "TestExecutor::test_executor_context": IMAP,
    # test_joblib.py
    "TestJobLib::test_default_backend": DEFAULT_JOBLIB,
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

    with Client(2) as client:
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
