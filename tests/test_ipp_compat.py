"""ipyparallel 9.2's client API on localpar: the gaps found by using it as an ipyparallel user
would (issue 14), each shown by a call that failed before."""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from typing import Any, Iterator

import pytest

import localpar
from localpar import Client, CompositeError, Reference, RemoteError, interactive

pytestmark = pytest.mark.timeout(60)

CAPTURED = "client"


@pytest.fixture(scope="module")
def c() -> Iterator[Client]:
    with Client(3) as client:
        yield client


def test_negative_index_is_the_last_engine(c: Client) -> None:
    assert c[-1].targets == c.ids[-1]
    assert c.direct_view(-1).targets == c.ids[-1]
    assert c.load_balanced_view(-1).targets == [c.ids[-1]]
    assert [v.targets for v in c] == c.ids
    with pytest.raises(TypeError):
        c[None]  # type: ignore[index]


def test_wait_takes_one_async_result_and_a_positional_timeout(c: Client) -> None:
    ar = c[0].apply_async(time.sleep, 0.05)
    assert c.wait(ar, 10) is True
    future: cf.Future = cf.Future()
    future.set_result(1)
    assert c.wait([future], 1) is True


def test_metadata_by_key_and_results_by_index(c: Client) -> None:
    ar = c[:].apply_async(time.sleep, 0.3)
    assert ar["completed"] == [None] * len(ar) == ar.completed
    with pytest.raises(TimeoutError):
        ar[0]
    ar.get(10)
    assert ar["engine_id"] == c.ids == ar.engine_id
    assert all(isinstance(t, datetime) for t in ar["completed"])
    assert ar.status == ["ok"] * 3
    with pytest.raises(KeyError):
        ar["foo"]
    assert not hasattr(ar, "foo")
    values = c[:].apply_async(lambda x: x, 7)
    values.get(10)
    assert values[0] == 7 and values[1:] == [7, 7]
    single = c[1].apply_async(lambda: 5)
    assert single.get(10) == 5 and single["engine_id"] == 1 and single[0] == 5


def test_composite_error_tb_limit_truncates(c: Client) -> None:
    ars = [c[:].apply_async(lambda: 1 / 0) for _ in range(2)]
    errors = [e for ar in ars for e in ar.exception(10).errors]  # type: ignore[union-attr]
    composite = CompositeError("many", errors)
    assert CompositeError.tb_limit == 4
    assert "2 more exceptions" in composite.render_traceback()[-1]
    composite.tb_limit = 6
    assert "more exceptions" not in "\n".join(composite.render_traceback())


def test_targets_argument_on_namespace_calls(c: Client) -> None:
    dv = c[:]
    dv.push({"t": 1}, block=True)
    dv.push({"t": 2}, targets=[0], block=True)
    assert dv.pull("t", block=True) == [2, 1, 1]
    assert dv.pull("t", targets=-1, block=True) == 1
    dv.execute("t = 3", targets=1, block=True)
    assert dv.pull("t", block=True) == [2, 3, 1]
    dv.scatter("s", [1, 2, 3, 4], targets=[0, 2], block=True)
    assert dv.gather("s", targets=[0, 2], block=True) == [1, 2, 3, 4]
    busy = c[0].apply_async(time.sleep, 1)  # queued behind it: aborted; another engine: left alone
    queued = c[0].apply_async(lambda: 1)
    queued_elsewhere = c[1].apply_async(lambda: 2)
    dv.abort(targets=0)
    with pytest.raises(localpar.TaskAborted):
        queued.get(10)
    assert queued_elsewhere.get(10) == 2
    busy.wait(10)


def test_execute_silent_false_gives_the_last_expression(c: Client) -> None:
    ar = c[:].execute("x = 2\nx * 21", silent=False, label="answer")
    ar.get(10)
    assert [r["data"]["text/plain"] for r in ar.execute_result] == ["42"] * 3
    silent = c[:].execute("x * 21", block=False)
    assert [reply.execute_result for reply in silent.get(10)] == [None] * 3 and silent.execute_result == [None] * 3
    assert c[0].execute("x", silent=False, block=True).execute_result["data"]["text/plain"] == "2"


def test_parallel_dist_and_sync_imports_local(c: Client) -> None:
    @c[:].parallel(dist="b", block=True)
    def double(xs: Any) -> Any:
        return [2 * x for x in xs]

    assert double([1, 2, 3]) == [2, 4, 6]
    with pytest.raises(ValueError, match="dist"):
        c[:].parallel(dist="q")
    with c[:].sync_imports(local=True, quiet=True):
        import json  # noqa: F401
    with pytest.raises(NotImplementedError):
        with c[:].sync_imports(local=False):
            pass


def test_return_exceptions_and_return_when(c: Client) -> None:
    def fail_on_1(n: int) -> int:
        if n == 1:
            raise ValueError("one")
        return n

    ar = c[:].map_async(fail_on_1, [0, 1, 2])
    with pytest.raises(CompositeError):
        ar.get(10)
    results = ar.get(10, return_exceptions=True)
    assert results[0] == 0 and isinstance(results[1], RemoteError) and results[2] == 2
    amr = c.load_balanced_view().map(fail_on_1, range(3), return_exceptions=True, block=False)
    assert [type(r).__name__ for r in amr] == ["int", "RemoteError", "int"]

    def slow_unless_0(i: int) -> int:
        if i == 0:
            raise ValueError("first")
        time.sleep(2)
        return i

    ar = c[:].map_async(slow_unless_0, range(3))
    tic = time.monotonic()
    done, pending = ar.wait(timeout=10, return_when=localpar.FIRST_EXCEPTION)
    assert time.monotonic() - tic < 1.5
    assert len(done) == 1 and len(pending) == 2
    assert ar.wait(10) is True


def test_status_wait_for_send_block_and_purge(c: Client) -> None:
    ar = c[0].apply_async(lambda: 1)
    assert ar.wait_for_send(5) is None
    ar.get(10)
    assert ar.status == "ok" and isinstance(ar.completed, datetime)
    assert c.block is False
    with pytest.raises(ValueError):
        c.purge_results()
    running = c[1].apply_async(time.sleep, 0.3)
    with pytest.raises(RuntimeError):
        c.purge_results(running)
    running.get(10)
    c.purge_results("all")
    assert c.results == {}
    c.wait_interactive([c[0].apply_async(lambda: 2)])


def test_pushed_function_sees_names_pushed_beside_it(c: Client) -> None:
    @interactive
    def f() -> Any:
        return (pushed_only, CAPTURED)  # type: ignore[name-defined]  # noqa: F821

    dv = c[:]
    with pytest.raises(CompositeError):  # nothing pushed yet: NameError on the engines
        dv.execute("b = f()", block=True) if dv.push({"f": f}, block=True) else None
    # the pushed CAPTURED wins over the value f captured on the client
    dv.push({"f": f, "pushed_only": 5, "CAPTURED": "pushed"}, block=True)
    dv.execute("b = f()", block=True)
    assert dv.pull("b", block=True) == [(5, "pushed")] * 3
    # as typed in a notebook: a lambda whose global `f` is the pushed one
    call_f = interactive(eval("lambda: f()", {"__name__": "__main__"}))
    assert dv.apply_sync(call_f) == [(5, "pushed")] * 3
    assert dv.apply_sync(lambda x: x, Reference("pushed_only")) == [5, 5, 5]


def test_datapub_under_ipyparallel_and_ipython_names(c: Client) -> None:
    for module in ("ipyparallel.datapub", "IPython.kernel.zmq.datapub"):
        ar = c[0].execute(f"from {module} import publish_data\npublish_data({{'m': {module!r}}})")
        ar.get(10)
        assert ar.data == {"m": module}
    assert "IPython.kernel" not in sys.modules  # the client process is left alone


def test_uncaught_remote_error_prints_the_remote_traceback(tmp_path: Any) -> None:
    script = tmp_path / "fails.py"
    script.write_text(
        textwrap.dedent(
            """
            from localpar import Client

            def lookup():
                return {}["missing"]

            with Client(1) as c:
                c[0].apply_sync(lookup)
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert 'return {}["missing"]' in done.stderr  # the engine-side frame
    assert "RemoteError: [engine 0] KeyError: 'missing'" in done.stderr
