"""AsyncResult as ipyparallel users know it, and the client-level bookkeeping of results.

Tasks that must stay pending wait for a file the test creates (a gate), so that
every ordering below is forced, never a matter of timing.
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import wait_for_file

from localpar import AsyncMapResult, AsyncResult, Client, CompositeError, RemoteError, TaskAborted

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def gate(tmp_path: Path, client: Client) -> Iterator[str]:
    """A path that releases gated tasks once created; created at teardown in any case."""
    path = str(tmp_path / "gate")
    yield path
    Path(path).touch()
    client.wait(timeout=20)


def gated_on_engine(engine: int, path: str) -> int:
    """Return the engine id at once, except on `engine`, which waits for the gate first."""
    from localpar.engine.namespace import engine_id

    if engine_id() == engine:
        wait_for_file(path)
    return engine_id()


def echo(x: Any) -> Any:
    return x


def chatty(tag: str) -> str:
    from localpar.engine.namespace import engine_id

    print(f"out {tag} {engine_id()}")
    print(f"err {tag} {engine_id()}", file=sys.stderr)
    return tag


def boom(message: str = "boom") -> None:
    raise ValueError(message)


# -- results and their shapes --------------------------------------------------------------
def test_get_dict_and_len(client: Client) -> None:
    ar = client[:].apply_async(echo, "v")
    assert len(ar) == 2
    assert ar.get_dict(timeout=10) == {0: "v", 1: "v"}
    ar1 = client[1].apply_async(echo, "w")
    assert len(ar1) == 1
    assert ar1.get_dict(timeout=10) == {1: "w"}
    amr = client[:].map_async(echo, range(5))
    assert isinstance(amr, AsyncMapResult) and len(amr) == 5


def test_get_dict_needs_one_task_per_engine(client: Client) -> None:
    amr = client.load_balanced_view([0]).map_async(echo, range(3))
    with pytest.raises(ValueError):
        amr.get_dict(timeout=10)


def test_iteration_yields_results_as_they_arrive(client: Client, gate: str) -> None:
    ar = client[:].apply_async(gated_on_engine, 1, gate)
    it = iter(ar)
    assert next(it) == 0  # engine 1 is still held by the gate
    assert not ar.ready()
    Path(gate).touch()
    assert next(it) == 1
    assert list(it) == []


def test_map_iteration_yields_chunks_as_they_arrive(client: Client, gate: str) -> None:
    def item(i: int) -> int:
        if i == 3:
            wait_for_file(gate)
        return i

    amr = client[:].map_async(item, range(4))  # engine 0 gets 0, 1; engine 1 gets 2, 3
    it = iter(amr)
    assert [next(it), next(it)] == [0, 1]
    assert not amr.ready()
    Path(gate).touch()
    assert list(it) == [2, 3]
    assert amr.get(timeout=10) == [0, 1, 2, 3]


def test_ready_successful_wait_with_timeout(client: Client, gate: str) -> None:
    ar = client[1].apply_async(wait_for_file, gate)
    assert ar.wait(0.05) is False
    assert ar.ready() is False
    with pytest.raises(TimeoutError):
        ar.get(timeout=0.05)
    Path(gate).touch()
    assert ar.wait(10) is True
    assert ar.ready() and ar.successful()
    failed = client[0].apply_async(boom)
    assert failed.wait(10) is True
    assert failed.ready() and not failed.successful()


def test_successful_before_done_raises_runtime_error(client: Client, gate: str) -> None:
    ar = client[1].apply_async(wait_for_file, gate)
    with pytest.raises(RuntimeError):  # ipyparallel: "Cannot check successful() if not done."
        ar.successful()


# -- metadata, output, timing --------------------------------------------------------------
def test_metadata_keys_and_values(client: Client) -> None:
    def publish_and_print() -> int:
        from localpar.datapub import publish_data

        print("hi")
        publish_data({"k": 1})
        return 1

    ar = client[:].apply_async(publish_and_print)
    ar.get(timeout=10)
    metas: Any = ar.metadata
    assert isinstance(metas, list) and len(metas) == 2
    for engine, md in enumerate(metas):
        assert {
            "engine_id",
            "submitted",
            "started",
            "completed",
            "status",
            "stdout",
            "stderr",
            "data",
            "msg_id",
        } <= set(md)
        assert md["engine_id"] == engine
        assert md["status"] == "ok"
        assert all(isinstance(md[k], datetime.datetime) for k in ("submitted", "started", "completed"))
        assert md["submitted"] <= md["started"] <= md["completed"]
        assert (md["stdout"], md["stderr"], md["data"]) == ("hi\n", "", {"k": 1})
        assert md["msg_id"] in ar.msg_ids
    single = client[1].apply_async(publish_and_print)
    single.get(timeout=10)
    assert isinstance(single.metadata, dict) and single.metadata["engine_id"] == 1


def test_stdout_and_stderr_per_engine_in_order(client: Client) -> None:
    ar = client[:].apply_async(chatty, "t")
    ar.get(timeout=10)
    assert ar.stdout == ["out t 0\n", "out t 1\n"]
    assert ar.stderr == ["err t 0\n", "err t 1\n"]
    single = client[1].apply_async(chatty, "s")
    single.get(timeout=10)
    assert (single.stdout, single.stderr) == ("out s 1\n", "err s 1\n")


def test_display_outputs(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    ar = client[:].apply_async(chatty, "d")
    ar.get(timeout=10)
    capsys.readouterr()
    ar.display_outputs()
    out = capsys.readouterr().out
    assert out.index("[stdout:0]") < out.index("out d 0") < out.index("[stdout:1]") < out.index("out d 1")


def test_display_outputs_writes_stderr_to_stderr(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    # ipyparallel republishes the engines' stderr on sys.stderr, labelled [stderr:i]
    ar = client[:].apply_async(chatty, "e")
    ar.get(timeout=10)
    capsys.readouterr()
    ar.display_outputs()
    captured = capsys.readouterr()
    assert captured.err.index("[stderr:0]") < captured.err.index("err e 0") < captured.err.index("err e 1")
    assert "err e" not in captured.out


def test_elapsed_wall_time_serial_time(client: Client) -> None:
    def nap() -> None:
        time.sleep(0.05)

    ar = client[:].apply_async(nap)
    ar.get(timeout=10)
    # each task slept 0.05 s: lower bounds only (upper bounds would depend on the machine)
    assert ar.serial_time >= 0.09
    assert ar.wall_time >= 0.045
    assert ar.elapsed >= ar.wall_time - 0.01
    assert all(isinstance(v, float) for v in (ar.elapsed, ar.wall_time, ar.serial_time))


# -- failures ------------------------------------------------------------------------------
def test_single_target_error_is_remote_error_with_traceback(client: Client) -> None:
    ar = client[0].apply_async(boom, "single")
    with pytest.raises(RemoteError) as info:
        ar.get(timeout=10)
    err = info.value
    assert not isinstance(err, CompositeError)
    assert (err.ename, err.evalue, err.engine_info["engine_id"]) == ("ValueError", "single", 0)
    lines = err._render_traceback_()
    assert isinstance(lines, list) and all(isinstance(line, str) for line in lines)
    text = "\n".join(lines)
    assert "boom" in text and "ValueError: single" in text


def test_traceback_of_a_locally_defined_function_names_its_file(client: Client) -> None:
    # ipyparallel's remote tracebacks show the user's file and source lines; the engines
    # here run on the same machine, so the file is there to show.
    def local_failure() -> None:
        raise KeyError("local")

    with pytest.raises(RemoteError) as info:
        client[0].apply_sync(local_failure)
    text = "\n".join(info.value._render_traceback_())
    assert "local_failure" in text
    assert __file__ in text


def test_composite_error_like_ipyparallel(client: Client) -> None:
    with pytest.raises(CompositeError) as info:
        client[:].apply_sync(boom, "many")
    err = info.value
    assert isinstance(err, RemoteError)
    assert len(err.elist) == 2
    for engine, entry in enumerate(err.elist):
        assert isinstance(entry, tuple) and len(entry) == 4
        ename, evalue, tb, engine_info = entry
        assert (ename, evalue) == ("ValueError", "many")
        assert isinstance(tb, str) and "ValueError: many" in tb
        assert engine_info["engine_id"] == engine
    text = "\n".join(err._render_traceback_())
    assert "ValueError: many" in text and "[0:" in text and "[1:" in text
    for i in (0, 1):
        with pytest.raises(RemoteError) as one:
            err.raise_exception(i)
        assert (one.value.ename, one.value.evalue, one.value.engine_info["engine_id"]) == ("ValueError", "many", i)
    with pytest.raises(IndexError):
        err.raise_exception(2)


def test_only_the_failing_engine_is_in_the_composite_error(client: Client) -> None:
    def fail_on_one() -> int:
        from localpar.engine.namespace import engine_id

        if engine_id() == 1:
            raise KeyError("one")
        return 0

    ar = client[:].apply_async(fail_on_one)
    with pytest.raises(CompositeError) as info:
        ar.get(timeout=10)
    assert [(e[0], e[3]["engine_id"]) for e in info.value.elist] == [("KeyError", 1)]
    metas: Any = ar.metadata
    assert metas[0]["status"] == "ok" and metas[1]["status"] == "error"


def test_aborted_task_raises_task_aborted(client: Client, gate: str) -> None:
    blocker = client[0].apply_async(wait_for_file, gate)
    queued = client[0].apply_async(echo, "never")
    queued.abort()
    Path(gate).touch()
    assert blocker.get(timeout=10) == gate
    with pytest.raises(TaskAborted):
        queued.get(timeout=10)
    meta: Any = queued.metadata
    assert meta["status"] == "aborted"


def test_aborted_load_balanced_task_raises_task_aborted(client: Client, gate: str) -> None:
    lv = client.load_balanced_view([1])
    blocker = lv.apply_async(wait_for_file, gate)
    queued = lv.apply_async(echo, "never")
    client.abort([queued])
    Path(gate).touch()
    assert blocker.get(timeout=10) == gate
    with pytest.raises(TaskAborted):
        queued.get(timeout=10)


# -- client-level calls --------------------------------------------------------------------
def test_client_wait_outstanding_results(client: Client, gate: str) -> None:
    quick = client[0].apply_async(echo, 7)
    held = client[1].apply_async(wait_for_file, gate)
    assert client.wait([quick], timeout=10) is True
    assert client.wait([quick, held], timeout=0.05) is False
    assert set(held.msg_ids) <= client.outstanding
    assert not set(quick.msg_ids) & client.outstanding
    Path(gate).touch()
    assert client.wait(timeout=10) is True
    assert not client.outstanding
    results = client.results
    assert results[quick.msg_ids[0]] == 7
    assert results[held.msg_ids[0]] == gate
    assert client.wait(held.msg_ids, timeout=1) is True  # msg_ids work as jobs too


def test_client_clear_clears_engine_namespaces_like_ipyparallel(client: Client) -> None:
    # ipyparallel: Client.clear(targets=None, block=None) "Clear the namespace in target(s)."
    client[:].push({"to_be_cleared": 1}, block=True)
    client.clear()
    client.wait(timeout=10)
    with pytest.raises(CompositeError) as info:
        client[:].pull("to_be_cleared", block=True)
    assert [e[0] for e in info.value.elist] == ["NameError", "NameError"]


def test_async_result_is_a_future(client: Client) -> None:
    import concurrent.futures

    ar = client[:].apply_async(echo, 1)
    assert isinstance(ar, concurrent.futures.Future) and isinstance(ar, AsyncResult)
    done, _ = concurrent.futures.wait([ar], timeout=10)
    assert ar in done and ar.result() == [1, 1]


def test_a_pending_task_leaves_few_objects_for_the_garbage_collector(tmp_path: Path) -> None:
    """Each pending task's objects are scanned by every collection: a burst of tiny tasks in a
    big notebook heap spent half its time in the collector at 20 per task."""
    import gc

    gate = str(tmp_path / "gate")
    with Client(1) as c:
        c.load_balance_depth = 1
        blocker = c[0].apply_async(wait_for_file, gate)  # the engine is busy: the tasks below wait
        lb = c.load_balanced_view()
        warm = [lb.apply_async(abs, -1) for _ in range(10)]
        gc.collect()
        gc.disable()
        try:
            before = len(gc.get_objects())
            pending = [lb.apply_async(abs, -i) for i in range(500)]
            per_task = (len(gc.get_objects()) - before) / len(pending)
        finally:
            gc.enable()
            Path(gate).touch()
        assert per_task <= 15, f"{per_task:.1f} tracked objects per pending task"
        assert blocker.get(timeout=30) == gate
        assert [ar.get(timeout=30) for ar in warm + pending] == [1] * 10 + list(range(500))
