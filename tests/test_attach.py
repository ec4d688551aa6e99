"""A second Client on an open cluster: Client(profile=name) / Client(cluster_id=id) (see localpar.client.attach)."""

from __future__ import annotations

import gc
import threading
from typing import Any, List

import pytest

from localpar import AsyncHubResult, AsyncResult, Client, ClientClosedError
from localpar.client import attach

TIMEOUT = 30


def pid() -> int:
    import os

    return os.getpid()


def test_attach_by_profile_and_by_cluster_id_share_the_engines() -> None:
    with Client(2, profile="t-share") as rc:
        by_name = Client(profile="t-share")
        by_id = Client(cluster_id=rc.cluster_id)
        for c in (by_name, by_id):
            assert c.owner is rc and c.cluster_id == rc.cluster_id and c.profile == "t-share"
            assert c.ids == rc.ids and c.engine_pids() == rc.engine_pids()
            assert "(attached)" in repr(c) and "(attached)" not in repr(rc)
            assert sorted(c[:].apply_async(pid).get(TIMEOUT)) == sorted(rc.engine_pids().values())
        assert rc.owner is rc
        engine = rc.add_engines(1)[0]  # an engine the owner adds serves every attached Client
        assert by_name[engine].apply_sync(pid) == rc.engine_pids()[engine]
        by_name.close()
        by_id.close()


def test_the_task_database_is_shared_and_each_client_keeps_its_history() -> None:
    with Client(2, profile="t-db") as rc:
        rc2 = Client(profile="t-db")
        try:
            mine = rc[0].apply_async(lambda: "owner's")
            theirs = rc2.load_balanced_view().apply_async(lambda: "attached's")
            assert (mine.get(TIMEOUT), theirs.get(TIMEOUT)) == ("owner's", "attached's")
            assert rc.history == mine.msg_ids and rc2.history == theirs.msg_ids
            both = set(mine.msg_ids + theirs.msg_ids)
            for c in (rc, rc2):
                assert both <= set(c.hub_history())
                found = c.db_query({"msg_id": {"$in": sorted(both)}}, keys=["msg_id"])
                assert {r["msg_id"] for r in found} == both
            # each answers for the other's tasks, from the shared database (an AsyncHubResult)
            hr = rc.get_result(theirs.msg_ids[0])
            assert isinstance(hr, AsyncHubResult) and hr.get(TIMEOUT) == "attached's"
            assert rc2.get_result(mine.msg_ids[0]).get(TIMEOUT) == "owner's"
            assert set(rc.results) == set(mine.msg_ids) and set(rc2.results) == set(theirs.msg_ids)
            # purging the Hub from one client purges it for the other
            rc2.purge_hub_results(mine.msg_ids)
            assert mine.msg_ids[0] not in rc.hub_history()
        finally:
            rc2.close()


def test_get_result_owner_false_keeps_the_result_in_this_client() -> None:
    with Client(1, profile="t-keep") as rc:
        rc2 = Client(profile="t-keep")
        try:
            ar = rc[0].apply_async(lambda: 42)
            assert ar.get(TIMEOUT) == 42
            msg_id = ar.msg_ids[0]
            assert isinstance(rc2.get_result(msg_id), AsyncHubResult)  # not kept: the database
            ahr = rc2.get_result(msg_id, owner=False)
            assert isinstance(ahr, AsyncHubResult) and ahr.get(TIMEOUT) == 42
            assert rc2.results == {msg_id: 42}
            again = rc2.get_result(msg_id)
            assert isinstance(again, AsyncResult) and not isinstance(again, AsyncHubResult)
            assert again.get(TIMEOUT) == 42
            rc2.purge_local_results(msg_id)
            assert rc2.results == {} and isinstance(rc2.get_result(msg_id), AsyncHubResult)
        finally:
            rc2.close()


def test_closing_an_attached_client_leaves_the_cluster_running() -> None:
    with Client(2, profile="t-close") as rc:
        rc2, rc3 = Client(profile="t-close"), Client(profile="t-close")
        running = rc2[0].apply_async(lambda: 7)
        rc2.close()
        rc2.close()  # idempotent
        assert rc2.closed and not rc.closed and not rc3.closed
        assert running.get(TIMEOUT) == 7  # what it submitted still completes
        assert rc[0].apply_sync(lambda: 1) == 1 and rc3[1].apply_sync(lambda: 2) == 2
        for call in (
            lambda: rc2[0],
            lambda: rc2.load_balanced_view().apply_async(pid),
            lambda: rc2.get_result(running.msg_ids[0]),
            lambda: rc2.db_query({}),
            lambda: rc2.hub_history(),
        ):
            with pytest.raises(ClientClosedError, match="attached to cluster .* still runs"):
                call()
        rc3.close()


def test_closing_the_owner_closes_the_cluster_for_every_attached_client() -> None:
    rc = Client(1, profile="t-owner")
    try:
        rc2 = Client(profile="t-owner")
        view = rc2[0]
    finally:
        rc.close()
    assert rc2.closed
    for call in (lambda: view.apply_sync(pid), lambda: rc2[0], lambda: rc2.get_result(-1), lambda: rc2.db_query({})):
        with pytest.raises(ClientClosedError, match="closed by the Client that started it"):
            call()
    with pytest.raises(OSError, match="no open localpar cluster with profile='t-owner'"):
        Client(profile="t-owner")  # the name is free again
    with Client(1, profile="t-owner") as again:
        assert again.owner is again
    rc2.close()  # after its cluster: nothing to do, no error


def test_shutdown_hub_from_an_attached_client_closes_the_cluster() -> None:
    with Client(1, profile="t-hub") as rc:
        Client(profile="t-hub").shutdown(hub=True)
        assert rc.closed


def test_an_attached_client_keeps_its_cluster_alive() -> None:
    rc = Client(1, profile="t-alive")
    rc2 = Client(profile="t-alive")
    try:
        del rc
        gc.collect()
        assert not rc2.closed and rc2[0].apply_sync(lambda: 3) == 3
    finally:
        rc2.owner.close()


def test_no_such_cluster_is_a_clear_oserror() -> None:
    with Client(1, profile="t-err") as rc:
        with pytest.raises(OSError, match=r"profile='nope'.*open clusters: .*profile='t-err'"):
            Client(profile="nope")
        with pytest.raises(OSError, match="cluster_id='ffffffff'"):
            Client(cluster_id="ffffffff")
        with pytest.raises(OSError, match="profile='t-err' and cluster_id='ffffffff'"):
            Client(profile="t-err", cluster_id="ffffffff")
        assert Client(profile="t-err", cluster_id=rc.cluster_id).owner is rc


def test_wrong_uses_are_refused_before_anything_starts() -> None:
    with Client(1, profile="t-refuse"):
        with pytest.raises(ValueError, match="profile='t-refuse' is already open"):
            Client(1, profile="t-refuse")
        with pytest.raises(ValueError, match="memory_limit, restart_dead configure"):
            Client(profile="t-refuse", memory_limit="1 GiB", restart_dead=True)
    with pytest.raises(TypeError, match="cluster_id= attaches to an open cluster"):
        Client(1, cluster_id="abc")
    with pytest.raises(TypeError, match="profile must be a non-empty str"):
        Client(1, profile="")


def test_two_threads_starting_one_name_get_one_cluster() -> None:
    barrier = threading.Barrier(2)
    made: List[Any] = []
    errors: List[BaseException] = []

    def start() -> None:
        barrier.wait(TIMEOUT)
        try:
            made.append(Client(1, profile="t-race", start_method="forkserver"))
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    try:
        assert len(made) == 1 and len(errors) == 1, (made, errors)
        assert "profile='t-race' is already open" in str(errors[0])
    finally:
        for c in made:
            c.close()


def test_every_client_attribute_is_shared_or_own() -> None:
    """A new Client attribute must say whether an attached Client shares it (attach.SHARED)."""
    with Client(1, profile="t-attrs", db=None) as rc:
        assert set(vars(rc)) <= attach.SHARED | attach.OWN, set(vars(rc)) - (attach.SHARED | attach.OWN)
        rc2 = Client(profile="t-attrs")
        assert rc2.history is not rc.history and rc2.ledger is rc.ledger
        rc2.close()


def test_a_named_cluster_from_localpar_cluster_is_attached_to() -> None:
    import localpar as ipp

    with ipp.Cluster(n=1, profile="t-cluster") as rc:
        rc.block = True  # set on one Client, not on the other
        assert set(vars(rc)) <= attach.SHARED | attach.OWN, set(vars(rc)) - (attach.SHARED | attach.OWN)
        rc2 = ipp.Client(profile="t-cluster")
        assert rc2.cluster is None and rc2.block is False
        assert rc2.owner is rc and rc2[0].apply_sync(pid) == rc.engine_pids()[0]
        rc2.close()


def test_outstanding_and_abort_are_each_clients_own() -> None:
    import time

    from localpar import error

    with Client(1, profile="t-out") as rc:
        rc2 = Client(profile="t-out")
        try:
            blocker = rc[0].apply_async(time.sleep, 60)  # ended below by interrupt()
            mine = rc[0].apply_async(pid)
            theirs = rc2[0].apply_async(pid)
            assert rc.outstanding == set(blocker.msg_ids + mine.msg_ids)
            assert rc2.outstanding == set(theirs.msg_ids)
            rc2.abort()  # its own queued task only
            with pytest.raises(error.TaskAborted):
                theirs.get(TIMEOUT)
            assert not mine.done()
            rc.interrupt()
            with pytest.raises(error.RemoteError):
                blocker.get(TIMEOUT)
            assert mine.get(TIMEOUT) == rc.engine_pids()[0]
            assert rc.outstanding == set() and rc2.outstanding == set()
        finally:
            rc2.close()
