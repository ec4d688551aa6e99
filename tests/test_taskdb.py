"""The task database (ipyparallel's Hub in the client): queries, bounds, SQLite across a
SIGKILL, resubmit, purge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from datetime import datetime, timedelta

import psutil
import pytest

from localpar import AsyncHubResult, AsyncResult, Client, RemoteError
from localpar.client.handles import TaskRecord
from localpar.client.taskdb import TaskDB, approx_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(seq: int, value=None, *, engine=0, status="ok", t0=1_000_000.0):
    r = TaskRecord(seq, f"t-{seq}", engine, None, 0)  # type: ignore[arg-type]
    r.submitted = t0 + seq
    r.started, r.completed, r.received = t0 + seq + 0.1, t0 + seq + 0.2, t0 + seq + 0.3
    r.value, r.status = value, status
    return r


class _Result:
    """What the database reads of a finished task's AsyncResult."""

    fname = "f"

    def __init__(self, data):
        self._slots = [data]

    def data_slots(self):
        return self._slots


def _finish(db: TaskDB, r: TaskRecord, data=None) -> None:
    r.done = True
    db.finished(r, _Result(data or {}))  # type: ignore[arg-type]


def _db_of(n: int, **limits) -> TaskDB:
    db = TaskDB("test", **limits)
    for i in range(n):
        r = _record(i, value=i)
        db.add(r, "task" if i % 2 else "mux", (abs, (i,), {}), "f")
        _finish(db, r, {"i": i})
    return db


# -- the query engine -------------------------------------------------------------------------
def test_db_query_operators_select_what_mongo_would():
    db = _db_of(10)
    ids = lambda q: [row["msg_id"] for row in db.find(q, ["msg_id"])]  # noqa: E731
    t5 = db.find({"msg_id": "t-5"})[0]["submitted"]
    assert ids({"msg_id": {"$in": ["t-1", "t-3", "nope"]}}) == ["t-1", "t-3"]
    assert ids({"msg_id": {"$nin": [f"t-{i}" for i in range(8)]}}) == ["t-8", "t-9"]
    assert ids({"submitted": {"$lt": t5}}) == [f"t-{i}" for i in range(5)]
    assert ids({"submitted": {"$gt": t5}}) == [f"t-{i}" for i in range(6, 10)]
    assert ids({"submitted": {"$lte": t5}}) == ids({"submitted": {"$le": t5}}) == [f"t-{i}" for i in range(6)]
    assert ids({"submitted": {"$gte": t5}}) == ids({"submitted": {"$ge": t5}}) == [f"t-{i}" for i in range(5, 10)]
    assert ids({"submitted": t5}) == ids({"submitted": {"$eq": t5}}) == ["t-5"]
    assert ids({"queue": {"$ne": "mux"}}) == [f"t-{i}" for i in range(1, 10, 2)]
    # several operators on one key, several keys: all must hold
    assert ids({"submitted": {"$gt": t5, "$lt": t5 + timedelta(seconds=3)}, "queue": "task"}) == ["t-7"]
    # a naive datetime is local time, as ipyparallel takes it
    assert ids({"submitted": {"$lt": t5.astimezone().replace(tzinfo=None)}}) == [f"t-{i}" for i in range(5)]
    # an ordering test on a missing value is False, not a TypeError
    pending = _record(99)
    pending.started = pending.completed = pending.received = None
    db.add(pending, "task", None, "f")
    assert "t-99" not in ids({"completed": {"$lt": datetime.now().astimezone()}})
    assert ids({"completed": None}) == ["t-99"]


def test_db_query_rows_have_ipyparallels_keys_and_results_on_request():
    db = _db_of(2)
    row = db.find({"msg_id": "t-1"})[0]
    for key in ("msg_id", "submitted", "started", "completed", "received", "engine_uuid", "client_uuid", "queue",
                "header", "result_header", "result_content", "stdout", "stderr", "error", "resubmitted"):  # fmt: skip
        assert key in row, key
    assert "result" not in row and "buffers" not in row  # big things only on request, as buffers
    assert row["submitted"].tzinfo is not None
    assert db.find({"msg_id": "t-1"}, ["result", "data"]) == [{"msg_id": "t-1", "result": 1, "data": {"i": 1}}]


def test_bad_queries_get_clear_errors():
    db = _db_of(1)
    with pytest.raises(ValueError, match=r"\$regex"):
        db.find({"msg_id": {"$regex": "t"}})
    with pytest.raises(TypeError, match=r"\$in"):
        db.find({"msg_id": {"$in": "t-1"}})
    with pytest.raises(KeyError, match="bogus"):
        db.find({}, keys=["bogus"])
    with pytest.raises(TypeError, match="dict"):
        db.find("msg_id")  # type: ignore[arg-type]


# -- bounded in memory ---------------------------------------------------------------------------
def test_the_memory_database_stays_bounded_after_100000_records_and_keeps_pending_ones():
    db = TaskDB("test")  # the defaults: 1024 records, 1 GiB
    first = _record(-1)
    db.add(first, "task", None, "f")  # never finishes: must never be culled
    for i in range(100_000):
        r = _record(i, value=i)
        db.add(r, "task", (abs, (i,), {}), "f")
        _finish(db, r)
    assert len(db) <= db.record_limit
    assert len(db) >= db.record_limit * (1 - db.cull_fraction)
    history = db.history()
    assert history[0] == "t--1"  # the pending one stays
    assert history[-1] == "t-99999" and db.entry("t-0") is None  # the oldest finished went


def test_the_size_limit_culls_the_oldest_finished_records():
    db = TaskDB("test", size_limit=10 * 2**20)
    for i in range(100):
        r = _record(i, value=b"x" * 2**20)  # 1 MiB each
        db.add(r, "task", None, "f")
        _finish(db, r)
    assert db.size <= 10 * 2**20
    assert 8 <= len(db) <= 10
    assert db.history()[-1] == "t-99"


def test_approx_size_reads_arrays_and_samples_long_containers():
    np = pytest.importorskip("numpy")
    assert approx_size(np.zeros(1000)) == 8000
    assert approx_size(b"x" * 100) == 100
    assert approx_size(3) == 0
    big = ["y" * 100] * 10_000
    assert 900_000 <= approx_size(big) <= 1_200_000
    assert approx_size({"a": np.zeros(10)}) >= 80


def test_a_long_running_client_keeps_a_bounded_database():
    with Client(2) as c:
        c.task_db.record_limit = 50
        lv = c.load_balanced_view()
        ars = [lv.apply_async(abs, -i) for i in range(300)]
        assert [a.get(30) for a in ars] == list(range(300))
        assert len(c.task_db) <= 50
        assert c.hub_history()[-1] == ars[-1].msg_ids[0]
        assert len(c.history) == 300  # rc.history stays a plain list, as ipyparallel's
        assert c.get_result(ars[-1].msg_ids[0]).get(5) == 299


# -- the Hub calls on a live cluster -------------------------------------------------------------
def _draw():
    import random

    from localpar.datapub import publish_data

    publish_data({"seen": 1})
    print("drawn")
    return random.random()


def _fail():
    raise ValueError("bad value")


def test_get_result_result_status_and_history():
    with Client(2) as c:
        lv = c.load_balanced_view()
        ar = lv.apply_async(_draw)
        value = ar.get(10)
        slow = c[0].apply_async(time.sleep, 0.5)
        assert c.history == [ar.msg_ids[0], slow.msg_ids[0]]
        assert lv.history == ar.msg_ids
        assert c[0].history == [] and c.hub_history() == c.history
        running = c.get_result(slow.msg_ids[0])
        assert not isinstance(running, AsyncHubResult)
        hub = c.get_result(ar.msg_ids[0])
        assert isinstance(hub, AsyncHubResult) and isinstance(hub, AsyncResult)
        assert hub.get(5) == value and hub.data == {"seen": 1} and hub.stdout == "drawn\n"
        assert c.get_result([ar.msg_ids[0]]).get(5) == [value]
        assert c.get_result(0).msg_ids == ar.msg_ids  # an index into history
        status = c.result_status(c.history)
        assert status["pending"] == slow.msg_ids and status["completed"] == ar.msg_ids
        slow.get(5)
        full = c.result_status(c.history, status_only=False)
        assert full[ar.msg_ids[0]] == value and full["completed"] == c.history
        bad = lv.apply_async(_fail)
        assert bad.wait(10)
        with pytest.raises(RemoteError, match="bad value"):
            c.result_status(bad.msg_ids, status_only=False)
        record = c.db_query({"msg_id": bad.msg_ids[0]}, ["error", "result", "status"])[0]
        assert record["error"]["ename"] == "ValueError" and record["status"] == "error"
        with pytest.raises(RemoteError) as info:
            c.get_result("deadbeef-0").get(5)
        assert info.value.ename == "KeyError"
        with pytest.raises(TypeError, match="Expected msg_id"):
            c.get_result(3.5)


def test_resubmit_runs_the_task_again_under_a_new_msg_id():
    with Client(2) as c:
        lv = c.load_balanced_view()
        ar = lv.apply_async(_draw)
        first = ar.get(10)
        again = c.resubmit(ar.msg_ids)
        assert isinstance(again, AsyncHubResult)
        (second,) = again.get(10)  # a list even for one id, as ipyparallel
        assert second != first and again.msg_ids != ar.msg_ids
        assert again.data == [{"seen": 1}]
        assert c.history == ar.msg_ids  # not added to history...
        assert c.hub_history() == ar.msg_ids + again.msg_ids  # ...but the Hub knows it
        assert c.db_query({"msg_id": ar.msg_ids[0]}, ["resubmitted"])[0]["resubmitted"] == again.msg_ids[0]
        with pytest.raises(RemoteError) as info:
            c.resubmit(["nope"])
        assert info.value.ename == "KeyError"
        # arguments in shared memory are freed once the call is done: the call itself is kept
        np = pytest.importorskip("numpy")
        big = c[0].apply_async(np.sum, np.ones(200_000))
        assert big.get(10) == 200_000
        assert c.resubmit(big).get(10) == [200_000]


def test_purge_forgets_finished_records_and_keeps_pending_ones():
    with Client(2) as c:
        done = [c[i % 2].apply_async(abs, -i) for i in range(6)]
        for a in done:
            a.get(10)
        slow = c[0].apply_async(time.sleep, 1)
        with pytest.raises(ValueError, match="at least one"):
            c.purge_hub_results()
        c.purge_hub_results(done[0])
        assert done[0].msg_ids[0] not in c.hub_history()
        with pytest.raises(RemoteError):
            c.get_result(done[0].msg_ids[0]).get(5)
        c.purge_hub_results(targets=1)
        assert [m for m in c.hub_history() if m in {a.msg_ids[0] for a in done[1::2]}] == []
        c.purge_hub_results("all")
        assert c.hub_history() == slow.msg_ids  # pending: kept
        slow.get(5)
        with pytest.raises(RuntimeError, match="outstanding"):
            c.purge_local_results([c[0].apply_async(time.sleep, 0.5)])
        c.wait(timeout=5)
        c.purge_everything()
        assert c.hub_history() == [] and c.history == []


# -- SQLite, across the death of the client -----------------------------------------------------
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from localpar import Client
    from localpar.datapub import publish_data

    def work(i):
        publish_data({"step": i, "array": np.arange(5) * i})
        print("out", i)
        return {"i": i, "square": np.full(3, i * i)}

    def fail():
        raise ValueError("boom")

    c = Client(2, db=sys.argv[1])
    lv = c.load_balanced_view()
    ars = [lv.apply_async(work, i) for i in range(4)]
    bad = lv.apply_async(fail)
    for a in ars:
        a.get(30)
    bad.wait(30)
    history = c.hub_history()  # waits until the writer committed what was queued before it
    print(json.dumps({"history": history, "ids": [a.msg_ids[0] for a in ars], "bad": bad.msg_ids[0],
                      "cluster": c.cluster_id, "pids": list(c.engine_pids().values())}), flush=True)
    time.sleep(600)
    """
)


def _kill_leftovers(info: dict) -> None:
    """Whatever the killed client left (its engines exit on their lifeline; these are the rest)."""
    for pid in info["pids"]:
        try:
            p = psutil.Process(pid)
            p.kill()
            p.wait(10)
        except psutil.NoSuchProcess:
            pass
    for name in os.listdir("/dev/shm"):
        if name.startswith(f"localpar-{info['cluster']}"):
            os.unlink(os.path.join("/dev/shm", name))


def test_sqlite_records_answer_a_new_client_after_the_first_was_sigkilled(tmp_path):
    path = str(tmp_path / "run.sqlite")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, path], stdout=subprocess.PIPE, text=True, start_new_session=True, env=env
    )
    info = None
    try:
        line = child.stdout.readline()  # type: ignore[union-attr]
        info = json.loads(line)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
        if info is not None:
            _kill_leftovers(info)
    assert child.returncode == -signal.SIGKILL
    with Client(1, db=path) as c:
        assert c.hub_history()[: len(info["history"])] == info["history"]
        assert c.history == []
        ar = c.get_result(info["ids"][2])
        assert isinstance(ar, AsyncHubResult)
        value = ar.get(5)
        assert value["i"] == 2 and value["square"].tolist() == [4, 4, 4]
        assert ar.data["step"] == 2 and ar.data["array"].tolist() == [0, 2, 4, 6, 8]
        assert ar.stdout == "out 2\n"
        assert [v["i"] for v in c.get_result(info["ids"]).get(5)] == [0, 1, 2, 3]
        with pytest.raises(RemoteError, match="boom") as err:
            c.get_result(info["bad"]).get(5)
        assert err.value.ename == "ValueError"
        rows = c.db_query({"msg_id": {"$in": info["ids"]}}, ["result", "data", "stdout", "completed"])
        assert [r["data"]["step"] for r in rows] == [0, 1, 2, 3]
        assert all(r["completed"] is not None for r in rows)
        assert c.db_query({"client_uuid": info["cluster"], "status": "error"}, ["msg_id"]) == [{"msg_id": info["bad"]}]
        # the new run's tasks go to the same file, after the old ones
        new = c[0].apply_async(abs, -7)
        assert new.get(5) == 7
        assert c.hub_history()[-1] == new.msg_ids[0]
        c.purge_hub_results(info["ids"][0])
        assert info["ids"][0] not in c.hub_history()
    with Client(1, db=path) as c:  # the purge reached the file; the writer thread is gone with its client
        assert info["ids"][0] not in c.hub_history() and info["ids"][1] in c.hub_history()
    assert not [t for t in threading.enumerate() if t.name.startswith("localpar-taskdb")]


def test_a_file_that_is_not_a_task_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="not a localpar task database"):
        Client(1, db=str(path))
    (tmp_path / "junk").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ValueError, match="junk"):
        Client(1, db=str(tmp_path / "junk"))


def _big_array_and_data():
    import numpy as np

    from localpar.datapub import publish_data

    publish_data({"state": np.full(1 << 18, 7.0)})  # 2 MiB: through shared memory
    return np.arange(1 << 18, dtype=np.float64)


def test_the_database_keeps_no_engine_page_alive_past_its_async_result():
    """A value or data that came through shared memory stays in the database only while its
    AsyncResult lives (the engine reuses those pages once the client drops them); after that,
    get_result says why it is gone and what to do, and the record's metadata stays."""
    import gc

    import numpy as np

    with Client(1) as c:
        ar = c[0].apply_async(_big_array_and_data)
        value = ar.get(timeout=30)
        msg_id = ar.msg_ids[0]
        held = c.get_result(msg_id)
        assert np.array_equal(held.get(timeout=30), value)
        del value, held
        weak = weakref.ref(ar)
        del ar
        gc.collect()
        assert weak() is None, "the database (or something else) keeps the AsyncResult alive"
        with pytest.raises(RemoteError, match="shared memory") as gone:
            c.get_result(msg_id).get(timeout=30)
        assert gone.value.ename == "LookupError"
        assert c.db_query({"msg_id": msg_id}, keys=["status"])[0]["status"] == "ok"
        assert c[0].apply_sync(int, 3) == 3


def test_with_a_database_file_a_released_value_is_read_from_the_file(tmp_path):
    import gc

    import numpy as np

    with Client(1, db=str(tmp_path / "run.sqlite")) as c:
        ar = c[0].apply_async(_big_array_and_data)
        expected = ar.get(timeout=30).copy()
        msg_id = ar.msg_ids[0]
        del ar
        gc.collect()
        assert np.array_equal(c.get_result(msg_id).get(timeout=30), expected)
