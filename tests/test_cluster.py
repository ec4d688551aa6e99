"""``localpar.Cluster``: ipyparallel's cluster lifecycle (sync, awaitable, with, async with), and
the bare ``localpar.register_joblib_backend()`` that runs on the default client."""

from __future__ import annotations

import asyncio

import pytest

import localpar as ipp
from localpar import Client
from localpar.client.registry import latest_open_client

pytestmark = pytest.mark.timeout(60)


def test_the_ipyparallel_first_line_works_with_the_import_changed() -> None:
    cluster = ipp.Cluster(n=2)
    assert not cluster.running and "running" not in repr(cluster)
    rc = cluster.start_and_connect_sync()
    try:
        assert isinstance(rc, Client) and rc.ids == [0, 1]
        assert rc.cluster is cluster and cluster.connect_client_sync() is rc
        assert rc.wait_for_engines() is None  # n defaults to the cluster's
        assert "engines=<running: 2>" in repr(cluster)
        assert rc[:].apply_sync(lambda: 1) == [1, 1]
    finally:
        cluster.stop_cluster_sync()
    assert rc.closed and not cluster.running
    cluster.stop_cluster_sync()  # stopping again does nothing
    with pytest.raises(RuntimeError, match="not running"):
        cluster.connect_client_sync()


def test_start_cluster_returns_the_cluster_and_takes_n_and_the_client_options() -> None:
    cluster = ipp.Cluster(n=1, restart_dead=True, profile="default", log_level=10)
    assert cluster.start_cluster_sync(n=2) is cluster
    assert cluster.start_cluster_sync() is cluster  # already running: the same engines
    rc = cluster.connect_client_sync()
    try:
        assert rc.restart_dead and len(rc) == 2
        assert sorted(cluster.start_engines_sync(1)) == [2]
        pids = rc.engine_pids()
        cluster.restart_engines_sync()
        assert set(rc.engine_pids().values()).isdisjoint(pids.values())
        cluster.stop_engines_sync()
        assert rc.ids == [] and not rc.closed  # as ipyparallel: the controller (here, the client) stays
    finally:
        cluster.stop_cluster_sync()


def test_with_and_async_with_give_the_client_and_stop_it() -> None:
    with ipp.Cluster(n=1) as rc:
        assert rc[0].apply_sync(lambda: 2) == 2
    assert rc.closed

    async def run() -> Client:
        async with ipp.Cluster(n=1) as rc:
            assert await rc[0].apply_async(lambda: 3) == 3
        cluster = ipp.Cluster(n=1)
        assert await cluster.start_cluster() is cluster
        other = await cluster.connect_client()
        assert await cluster.start_and_connect() is other
        await cluster.stop_cluster()
        assert other.closed
        return rc

    assert asyncio.run(run()).closed


def test_options_that_cannot_apply_are_refused_before_anything_starts() -> None:
    with pytest.raises(TypeError, match="bogus"):
        ipp.Cluster(n=2, bogus=1)
    with pytest.raises(ValueError, match="this machine only"):
        ipp.Cluster(n=2, engines="mpi")
    cluster = ipp.Cluster(n=1)
    with cluster as rc:
        with pytest.raises(TypeError, match="give Client options to Cluster"):
            cluster.connect_client_sync(timeout=5)
        assert rc[0].apply_sync(lambda: 4) == 4


def neg(x: int) -> int:
    return -x


def test_a_bare_register_joblib_backend_runs_on_the_newest_open_client() -> None:
    joblib = pytest.importorskip("joblib")
    ipp.register_joblib_backend("localpar-default-test")
    with Client(1) as older, Client(2) as newest:
        assert latest_open_client() is newest
        parallel = joblib.Parallel(backend="localpar-default-test")
        assert parallel._backend._view.client is newest
        assert parallel(joblib.delayed(neg)(i) for i in range(5)) == [0, -1, -2, -3, -4]
        assert not newest.closed and not older.closed  # not the backend's to close


def test_without_an_open_client_the_backend_starts_one_and_closes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    joblib = pytest.importorskip("joblib")
    from localpar.integrations import joblib_backend

    # As if this process had no Client open (another test's session cluster may be).
    monkeypatch.setattr(joblib_backend, "latest_open_client", lambda: None)
    ipp.register_joblib_backend("localpar-owned-test")
    parallel = joblib.Parallel(backend="localpar-owned-test")
    owned = parallel._backend._view.client
    assert parallel(joblib.delayed(neg)(i) for i in range(3)) == [0, -1, -2]
    assert owned.closed  # joblib terminated the backend: its client is closed, as ipyparallel's
    assert parallel(joblib.delayed(neg)(i) for i in range(2)) == [0, -1]  # called again: a new one
    assert parallel._backend._view.client.closed
