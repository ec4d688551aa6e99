"""The engine namespace: push/pull, item access, scatter/gather, execute/run, sync_imports,
and functions (``@interactive`` or defined in ``__main__``) that resolve globals in it.

Expected values are what ipyparallel 9 returns for the same calls on 2 engines.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from localpar import AsyncResult, Client, interactive

pytestmark = pytest.mark.timeout(60)


@interactive
def read_pushed() -> Any:
    return pushed_value  # type: ignore[name-defined]  # noqa: F821  (lives in the engine namespace)


@interactive
def scaled(x: int) -> int:
    return x * factor  # type: ignore[name-defined]  # noqa: F821


# -- push / pull -----------------------------------------------------------------------------
def test_push_then_pull_single_and_several_names(client: Client) -> None:
    dv = client[:]
    assert dv.push({"a": 1, "b": [2]}, block=True) == [None, None]
    assert dv.pull("a", block=True) == [1, 1]
    assert dv.pull(["a", "b"], block=True) == [[1, [2]], [1, [2]]]
    assert client[0].pull("a", block=True) == 1
    assert client[0].pull(["a", "b"], block=True) == [1, [2]]
    assert client[0].push({"q": 1}, block=True) is None
    ar = dv.pull("a")  # view.block is False
    assert isinstance(ar, AsyncResult) and ar.get(timeout=10) == [1, 1]


def test_push_targets_only_the_view(client: Client) -> None:
    client[:].push({"only": None}, block=True)
    client[1].push({"only": "one"}, block=True)
    assert client[:].pull("only", block=True) == [None, "one"]


def test_item_access(client: Client) -> None:
    dv = client[:]
    dv["x"] = 5
    assert dv["x"] == [5, 5]
    client[0]["x"] = 6
    assert client[0]["x"] == 6
    assert dv["x"] == [6, 5]


def test_pull_of_a_missing_name_raises_name_error(client: Client) -> None:
    from localpar import RemoteError

    with pytest.raises(RemoteError) as info:
        client[0].pull("never_defined_anywhere", block=True)
    assert info.value.ename == "NameError"


# -- scatter / gather ------------------------------------------------------------------------
def test_scatter_splits_contiguously(client: Client) -> None:
    dv = client[:]
    dv.scatter("s", list(range(5)), block=True)
    assert dv.pull("s", block=True) == [[0, 1, 2], [3, 4]]
    dv.scatter("u", list(range(3)), block=True)
    assert dv.pull("u", block=True) == [[0, 1], [2]]
    dv.scatter("f", [1, 2], flatten=True, block=True)
    assert dv.pull("f", block=True) == [1, 2]


@pytest.mark.parametrize("n", [0, 3, 5])
def test_gather_joins_lists_in_target_order(client: Client, n: int) -> None:
    dv = client[:]
    dv.scatter("g", list(range(n)), block=True)
    ar = dv.gather("g")
    assert ar.wait(3), "gather never finished"
    assert ar.get(timeout=0) == list(range(n))
    assert dv.gather("g", block=True) == list(range(n))


# ipyparallel joins gathered parts by type: numpy arrays are concatenated into one array,
# lists and tuples are chained into one list, anything else comes back as the list of
# parts.  These run on their own cluster: a failing join must not break the shared one.
def test_gather_of_arrays_is_one_array() -> None:
    np = pytest.importorskip("numpy")
    with Client(2) as c:
        c[:].scatter("arr", np.arange(5), block=True)
        parts = c[:].pull("arr", block=True)
        assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4]]
        ar = c[:].gather("arr")
        assert ar.wait(3), "gather never finished"
        joined = ar.get(timeout=0)
        assert isinstance(joined, np.ndarray) and joined.tolist() == [0, 1, 2, 3, 4]


def test_gather_of_flattened_scalars_is_the_list_of_parts() -> None:
    with Client(2) as c:
        c[:].scatter("one", [1, 2], flatten=True, block=True)
        ar = c[:].gather("one")
        assert ar.wait(3), "gather never finished"
        assert ar.get(timeout=0) == [1, 2]


def test_gather_of_strings_is_the_list_of_parts() -> None:
    with Client(2) as c:
        c[:].scatter("letters", "abcde", block=True)
        assert c[:].pull("letters", block=True) == ["abc", "de"]
        ar = c[:].gather("letters")
        assert ar.wait(3), "gather never finished"
        assert ar.get(timeout=0) == ["abc", "de"]


# -- execute / run ---------------------------------------------------------------------------
def test_execute_then_pull(client: Client) -> None:
    dv = client[:]
    dv.execute("import math\ny = math.floor(3.7)", block=True)
    assert dv.pull("y", block=True) == [3, 3]
    ar = dv.execute("z = y + 1")
    assert isinstance(ar, AsyncResult)
    ar.get(timeout=10)
    assert dv["z"] == [4, 4]
    done = client[1].execute("z = 10", block=True)  # ipyparallel's: the finished AsyncResult
    assert isinstance(done, AsyncResult) and done.ready() and done.get().execute_result is None
    assert dv["z"] == [4, 10]


def test_execute_error_is_remote(client: Client) -> None:
    from localpar import CompositeError

    with pytest.raises(CompositeError) as info:
        client[:].execute("1 / 0", block=True)
    assert [e[0] for e in info.value.elist] == ["ZeroDivisionError"] * 2


def test_run_file(client: Client, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("rv = 42\ndef twice(v):\n    return 2 * v\ntwice_rv = twice(rv)\n")
    client[:].run(str(script), block=True)
    assert client[:].pull(["rv", "twice_rv"], block=True) == [[42, 84], [42, 84]]


def test_sync_imports(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    dv = client[:]
    with dv.sync_imports():
        import colorsys  # noqa: F401

    assert "importing colorsys on engine(s)" in capsys.readouterr().out
    dv.execute("synced = colorsys.__name__", block=True)  # a NameError unless imported there
    assert dv.pull("synced", block=True) == ["colorsys", "colorsys"]
    with dv.sync_imports(quiet=True):
        from keyword import iskeyword  # noqa: F401
    assert capsys.readouterr().out == ""
    dv.execute("synced = iskeyword('def')", block=True)
    assert dv.pull("synced", block=True) == [True, True]


# -- functions that see the engine namespace -------------------------------------------------
def test_interactive_function_sees_pushed_values(client: Client) -> None:
    dv = client[:]
    dv.push({"pushed_value": "v0"}, block=True)
    client[1].push({"pushed_value": "v1"}, block=True)
    assert dv.apply_sync(read_pushed) == ["v0", "v1"]
    dv.push({"factor": 3}, block=True)
    assert dv.map_sync(scaled, range(4)) == [0, 3, 6, 9]
    assert client.load_balanced_view().map_sync(scaled, range(4), chunksize=2) == [0, 3, 6, 9]


def test_interactive_function_sees_names_set_by_execute(client: Client) -> None:
    client[:].execute("pushed_value = 'executed'", block=True)
    assert client[0].apply_sync(read_pushed) == "executed"


def test_main_functions_see_pushed_values(tmp_path: Path) -> None:
    """A script's own functions resolve globals in the engine namespace (no decorator needed)."""
    script = tmp_path / "main_script.py"
    script.write_text(
        textwrap.dedent(
            """
            from localpar import Client

            offset = 100  # a client-side global: captured with the function, wins on the engine

            def use_pushed(x):
                return x + offset + engine_side  # engine_side exists only on the engines

            if __name__ == "__main__":
                with Client(2) as c:
                    c[:].push({"engine_side": 10}, block=True)
                    print(c[:].apply_sync(use_pushed, 1), c[:].map_sync(use_pushed, [1, 2, 3]))
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[111, 111] [111, 112, 113]"


def test_an_execute_reply_carries_what_the_cell_printed(client):
    ar = client[0].execute("print('hello from', 'engine')\n40 + 2", silent=False, block=False)
    reply = ar.get(timeout=30)
    assert reply.stdout == "hello from engine\n"
    assert reply.execute_result["data"]["text/plain"] == "42"
