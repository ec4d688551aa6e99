"""localpar next to a real ipyparallel cluster: same calls, same results and shapes,
and code written for localpar (``publish_data`` included) running unchanged on ipyparallel.

One ipyparallel cluster (2 engines) serves the whole module; it takes a few seconds to start.
Functions sent to both are ``@interactive`` and import what they use: ipyparallel
re-imports a function's module on the engine unless it belongs to ``__main__``.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterator, List, Tuple

import pytest

import localpar
from localpar import Client, interactive

ipp = pytest.importorskip("ipyparallel")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def lp() -> Iterator[Client]:
    with Client(2) as c:
        yield c


@pytest.fixture(scope="module")
def rc(lp: Client) -> Iterator[Any]:
    """A live ipyparallel client on a 2-engine cluster (started after `lp`, whose engines fork
    while this process has a single thread)."""
    cluster = ipp.Cluster(n=2, log_level=logging.WARNING)
    client = None
    try:
        client = cluster.start_and_connect_sync()
        client.wait_for_engines(2, timeout=60)
        yield client
    finally:
        if client is not None:
            client.close()
        cluster.stop_cluster_sync()


def plain(text: str) -> str:
    """`text` without terminal colour codes (ipyparallel's tracebacks are coloured)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def both(rc: Any, lp: Client, call: Callable[[Any], Any]) -> Tuple[Any, Any]:
    """``call(client)`` on ipyparallel and on localpar: (ipyparallel's result, localpar's)."""
    return call(rc), call(lp)


@interactive
def add(x: int, y: int) -> int:
    return x + y


@interactive
def engine_id_and(x: Any) -> Tuple[Any, Any]:
    try:
        from localpar.engine.namespace import engine_id

        return engine_id(), x
    except Exception:  # on an ipyparallel engine
        from ipykernel.kernelbase import Kernel

        kernel: Any = Kernel.instance()
        return kernel.engine_id, x


@interactive
def read_global(name: str) -> Any:
    return globals()[name]


@interactive
def uses_pushed(x: int) -> int:
    return x * pushed_factor  # type: ignore[name-defined]  # noqa: F821  (on the engines only)


@interactive
def boom(message: str) -> None:
    raise ValueError(message)


@interactive
def chunk_kinds(x: Any) -> List[str]:
    return [type(x).__name__] * len(x)


@interactive
def publishes(step: int) -> int:
    from localpar.datapub import publish_data

    publish_data({"step": step})
    publish_data({"done": True})
    return step


# -- the same calls, the same results --------------------------------------------------------
def test_views_repr_len_targets(rc: Any, lp: Client) -> None:
    for make in (lambda c: c[:], lambda c: c[0], lambda c: c.direct_view(), lambda c: c.load_balanced_view()):
        theirs, ours = both(rc, lp, make)
        assert repr(ours) == repr(theirs)
        assert ours.targets == theirs.targets
    assert both(rc, lp, lambda c: (len(c[:]), len(c[0]), c[:].block)) == ((2, 1, False),) * 2


def test_apply_shapes(rc: Any, lp: Client) -> None:
    def shapes(c: Any) -> Any:
        multi = c[:].apply_async(add, 1, 2)
        single = c[1].apply_async(add, 1, 2)
        listed = c[[1]].apply_async(add, 1, 2)
        return (
            multi.get(timeout=10), multi.get_dict(timeout=10), multi.data, len(multi),
            single.get(timeout=10), single.get_dict(timeout=10), single.data, single.engine_id,
            listed.get(timeout=10), listed.data,
            c[:].apply_sync(add, 2, 2), c[0].apply_sync(add, 2, 2),
        )  # fmt: skip

    theirs, ours = both(rc, lp, shapes)
    assert ours == theirs


def test_apply_keyword_arguments_named_like_view_parameters(rc: Any, lp: Client) -> None:
    @interactive
    def kw(f: int = 0, block: int = 0, targets: int = 0) -> tuple:
        return (f, block, targets)

    theirs, ours = both(rc, lp, lambda c: c[:].apply_async(kw, f=5, block=1, targets=2).get(timeout=10))
    assert ours == theirs == [(5, 1, 2)] * 2


def test_map_shapes(rc: Any, lp: Client) -> None:
    def maps(c: Any) -> Any:
        amr = c[:].map_async(add, range(5), range(10, 15))
        lv = c.load_balanced_view()
        return (
            amr.get(timeout=10), len(amr),
            c[:].map_sync(engine_id_and, range(5)),
            c[0].map_sync(add, range(3), range(3)),
            lv.map_sync(add, range(7), range(7), chunksize=3),
            sorted(lv.map(add, range(5), range(5), ordered=False, block=True)),
        )  # fmt: skip

    theirs, ours = both(rc, lp, maps)
    assert ours == theirs


def test_push_pull_item_access(rc: Any, lp: Client) -> None:
    def namespace_ops(c: Any) -> Any:
        dv = c[:]
        pushed = dv.push({"a": 1, "b": [2]}, block=True)
        dv["x"] = 5
        c[1]["x"] = 6
        return (
            pushed, dv.pull("a", block=True), dv.pull(["a", "b"], block=True),
            c[0].pull("a", block=True), c[0].pull(["a", "b"], block=True),
            dv["x"], c[1]["x"], c[0].push({"q": 1}, block=True),
            dv.apply_sync(read_global, "b"),
        )  # fmt: skip

    theirs, ours = both(rc, lp, namespace_ops)
    assert ours == theirs


def test_execute_then_pull(rc: Any, lp: Client) -> None:
    def run(c: Any) -> Any:
        c[:].execute("import math\ny = math.floor(2.5) + 1", block=True)
        return c[:].pull("y", block=True)

    theirs, ours = both(rc, lp, run)
    assert ours == theirs == [3, 3]


def test_scatter_shapes(rc: Any, lp: Client) -> None:
    def scatter(c: Any) -> Any:
        dv = c[:]
        dv.scatter("s", list(range(5)), block=True)
        dv.scatter("u", list(range(3)), block=True)
        dv.scatter("f", [1, 2], flatten=True, block=True)
        dv.scatter("t", "abcde", block=True)
        return [dv.pull(name, block=True) for name in ("s", "u", "f", "t")]

    theirs, ours = both(rc, lp, scatter)
    assert ours == theirs


@pytest.mark.parametrize("seq", [list(range(5)), list(range(3)), []], ids=["5", "3", "empty"])
def test_gather_of_lists(rc: Any, lp: Client, seq: List[int]) -> None:
    def gather(c: Any) -> Any:
        c[:].scatter("g", seq, block=True)
        ar = c[:].gather("g")
        assert ar.wait(3), f"gather never finished on {type(c).__module__}"
        return ar.get(timeout=0)

    theirs, ours = both(rc, lp, gather)
    assert ours == theirs == seq


def test_remote_and_parallel(rc: Any, lp: Client) -> None:
    def decorated(c: Any) -> Any:
        remote_add = c[:].remote(block=True)(add)
        parallel_pair = c[:].parallel(block=True)(engine_id_and)
        return remote_add(1, 2), parallel_pair.map(range(4))

    theirs, ours = both(rc, lp, decorated)
    assert ours == theirs


def test_parallel_call_passes_chunks(rc: Any, lp: Client) -> None:
    theirs, ours = both(rc, lp, lambda c: c[:].parallel(block=True)(chunk_kinds)(list(range(5))))
    assert theirs == ["list"] * 5
    assert ours == theirs


def test_errors_have_the_same_shape(rc: Any, lp: Client) -> None:
    def errors(c: Any) -> Any:
        with pytest.raises(Exception) as many:
            c[:].apply_sync(boom, "many")
        with pytest.raises(Exception) as one:
            c[1].apply_sync(boom, "one")
        composite: Any = many.value
        single: Any = one.value
        with pytest.raises(Exception) as raised:
            composite.raise_exception(1)
        other: Any = raised.value
        return (
            type(composite).__name__,
            [(len(e), e[0], e[1], e[3]["engine_id"], "ValueError: many" in plain(e[2])) for e in composite.elist],
            (type(single).__name__, single.ename, single.evalue, single.engine_info["engine_id"]),
            (type(other).__name__, other.ename, other.engine_info["engine_id"]),
            any("ValueError: one" in plain(line) for line in single._render_traceback_()),
        )

    theirs, ours = both(rc, lp, errors)
    assert ours == theirs


def test_stdout_and_metadata(rc: Any, lp: Client) -> None:
    @interactive
    def say(word: str) -> str:
        print(word)
        return word

    def output(c: Any) -> Any:
        ar = c[:].apply_async(say, "hi")
        ar.get(timeout=10)
        if hasattr(ar, "wait_for_output"):
            ar.wait_for_output(timeout=10)
        keys = ("engine_id", "status", "stdout", "stderr", "data")
        metas = [{k: md[k] for k in keys} for md in ar.metadata]
        times = [md["submitted"] <= md["started"] <= md["completed"] for md in ar.metadata]
        return ar.stdout, metas, times

    theirs, ours = both(rc, lp, output)
    assert ours == theirs


# -- localpar code, scaled out to ipyparallel ------------------------------------------------
def test_publish_data_reaches_ipyparallel_data(rc: Any, lp: Client) -> None:
    def published(c: Any) -> Any:
        multi = c[:].apply_async(publishes, 1)
        single = c[0].apply_async(publishes, 2)
        balanced = c.load_balanced_view().apply_async(publishes, 3)
        values = [ar.get(timeout=10) for ar in (multi, single, balanced)]
        for ar in (multi, single, balanced):
            if hasattr(ar, "wait_for_output"):  # ipyparallel: data arrives with the output
                ar.wait_for_output(timeout=10)
        return values, multi.data, single.data, balanced.data

    theirs, ours = both(rc, lp, published)
    assert theirs == (
        [[1, 1], 2, 3],
        [{"step": 1, "done": True}] * 2,
        {"step": 2, "done": True},
        {"step": 3, "done": True},
    )
    assert ours == theirs


def test_interactive_function_sees_pushed_values_on_both(rc: Any, lp: Client) -> None:
    def run(c: Any) -> Any:
        c[:].push({"pushed_factor": 3}, block=True)
        return c[:].map_sync(uses_pushed, range(4)), c[1].apply_sync(uses_pushed, 2)

    theirs, ours = both(rc, lp, run)
    assert ours == theirs == ([0, 3, 6, 9], 6)


def test_publish_data_outside_any_engine_raises() -> None:
    from localpar.datapub import publish_data

    with pytest.raises(RuntimeError, match="inside a task"):
        publish_data({"x": 1})


def test_localpar_exports_the_ipyparallel_names() -> None:
    for name in ("AsyncResult", "AsyncMapResult", "DirectView", "LoadBalancedView", "CompositeError",
                 "RemoteError", "TaskAborted", "interactive"):  # fmt: skip
        assert hasattr(ipp, name) and hasattr(localpar, name)
