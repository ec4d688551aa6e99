"""DirectView and LoadBalancedView: the calls and result shapes of ipyparallel's views.

The expected values are what ipyparallel 9 returns for the same call on a 2-engine
cluster (checked live in test_scaleout.py, which compares the two side by side).
"""

from __future__ import annotations

import os
from typing import Any, List

import pytest
from conftest import wait_for_file

from localpar import AsyncMapResult, AsyncResult, Client, DirectView, LoadBalancedView
from localpar.client import view as view_module

pytestmark = pytest.mark.timeout(60)


def add(x: int, y: int) -> int:
    return x + y


def engine_pid(*_: Any) -> int:
    return os.getpid()


# -- repr, len, targets --------------------------------------------------------------------
@pytest.mark.parametrize(
    "targets, expected",
    [
        ([0, 1], "<DirectView [0, 1]>"),
        ([0, 1, 2, 3], "<DirectView [0, 1, 2, 3]>"),
        ([0, 1, 2, 3, 4, 5], "<DirectView [0, 1, 2, 3,...]>"),
        (list(range(8)), "<DirectView [0, 1, 2, 3,...]>"),
        (1, "<DirectView 1>"),
        ("all", "<DirectView all>"),
    ],
)
def test_direct_view_repr_matches_ipython(client: Client, targets: Any, expected: str) -> None:
    # DirectView() does not resolve its targets, so views over 6 or 8 engines need no engines.
    assert repr(DirectView(client, targets)) == expected


@pytest.mark.parametrize("targets", [[0, 1], [0, 1, 2, 3], list(range(6)), list(range(8)), 1, "all"])
def test_direct_view_repr_is_ipyparallels_formula(client: Client, targets: Any) -> None:
    ipp_view = pytest.importorskip("ipyparallel.client.view")
    stub = type("DirectView", (), {"targets": targets})()  # ipyparallel's __repr__ reads only these
    assert repr(DirectView(client, targets)) == ipp_view.View.__repr__(stub)


def test_real_views_repr_len_targets(client: Client) -> None:
    assert repr(client[:]) == "<DirectView [0, 1]>"
    assert repr(client[0]) == "<DirectView 0>"
    assert repr(client.direct_view()) == "<DirectView all>"
    assert repr(client.load_balanced_view()) == "<LoadBalancedView None>"
    assert (client[:].targets, client[0].targets, client.direct_view().targets) == ([0, 1], 0, "all")
    assert client.load_balanced_view().targets is None
    assert client.load_balanced_view([0]).targets == [0]
    assert (len(client[:]), len(client[0]), len(client[[1]]), len(client.direct_view())) == (2, 1, 1, 2)


def test_client_view_factories(client: Client) -> None:
    dv = client.direct_view()
    assert isinstance(dv, DirectView) and dv.block is False
    assert dv.apply_sync(engine_pid) == [client.engine_pids()[0], client.engine_pids()[1]]
    lv = client.load_balanced_view([1])
    assert isinstance(lv, LoadBalancedView)
    ars = [lv.apply_async(engine_pid) for _ in range(4)]
    assert {ar.get(timeout=10) for ar in ars} == {client.engine_pids()[1]}
    assert {ar.engine_id for ar in ars} == {1}


# -- apply and block -----------------------------------------------------------------------
def test_apply_honours_block(client: Client) -> None:
    dv = client[:]
    assert dv.block is False
    ar = dv.apply(add, 1, 2)
    assert isinstance(ar, AsyncResult)
    assert ar.get(timeout=10) == [3, 3]
    with dv.temp_flags(block=True):
        assert dv.apply(add, 1, 2) == [3, 3]
    assert dv.block is False
    dv.block = True
    try:
        assert dv.apply(add, 2, 2) == [4, 4]
        assert isinstance(dv.apply_async(add, 2, 2), AsyncResult)
    finally:
        dv.block = False
    assert dv.apply_sync(add, 3, 3) == [6, 6]  # always blocks


def test_apply_on_int_target_returns_bare_value(client: Client) -> None:
    ar = client[1].apply_async(add, 1, 1)
    assert ar.get(timeout=10) == 2
    assert ar.data == {}
    assert ar.engine_id == 1
    assert client[1].apply_sync(add, 1, 1) == 2


def test_apply_on_list_target_returns_list(client: Client) -> None:
    ar = client[[1]].apply_async(add, 1, 1)
    assert ar.get(timeout=10) == [2]
    assert ar.data == [{}]
    ar = client[:].apply_async(add, 1, 1)
    assert ar.get(timeout=10) == [2, 2]
    assert ar.data == [{}, {}]


def test_view_parameter_names_reach_the_function(client: Client) -> None:
    def f(f: int = 0, block: int = 0, targets: int = 0, timeout: int = 0) -> tuple:
        return (f, block, targets, timeout)

    assert client[:].apply_async(f, f=5, block=1, targets=2, timeout=3).get(timeout=10) == [(5, 1, 2, 3)] * 2
    assert client[0].apply_sync(f, f=5, block=1, targets=2) == (5, 1, 2, 0)
    assert client[:].apply(f, block=1).get(timeout=10) == [(0, 1, 0, 0)] * 2
    lv = client.load_balanced_view()
    assert lv.apply_async(f, f=5, block=1, targets=2).get(timeout=10) == (5, 1, 2, 0)


# -- map -----------------------------------------------------------------------------------
def test_map_results_in_order(client: Client) -> None:
    dv = client[:]
    amr = dv.map_async(add, range(7), range(10, 17))
    assert isinstance(amr, AsyncMapResult)
    assert len(amr) == 7
    assert amr.get(timeout=10) == [x + y for x, y in zip(range(7), range(10, 17))]
    assert dv.map_sync(add, [1, 2, 3], [1, 1, 1]) == [2, 3, 4]
    assert dv.map(add, [1], [2], block=True) == [3]
    assert isinstance(dv.map(add, [1], [2]), AsyncMapResult)  # view.block is False
    assert client[0].map_sync(add, range(3), range(3)) == [0, 2, 4]


def test_direct_map_sends_one_contiguous_chunk_per_engine(client: Client) -> None:
    pids = client.engine_pids()
    assert client[:].map_sync(engine_pid, range(5)) == [pids[0]] * 3 + [pids[1]] * 2


def test_map_stops_at_the_shortest_sequence_like_builtin_map(client: Client) -> None:
    assert client[:].map_sync(add, [1, 2], [1]) == [2]  # as ipyparallel's map does


# -- remote and parallel -------------------------------------------------------------------
def test_remote_decorator(client: Client) -> None:
    @client[:].remote(block=True)
    def plus_one(a: int) -> int:
        return a + 1

    assert plus_one(1) == [2, 2]

    @client[0].remote(block=False)
    def twice(a: int) -> int:
        return 2 * a

    ar = twice(4)
    assert isinstance(ar, AsyncResult) and ar.get(timeout=10) == 8


def test_parallel_map_calls_the_function_per_element(client: Client) -> None:
    @client[:].parallel(block=True)
    def kind(x: Any) -> str:
        return type(x).__name__

    assert kind.map(list(range(5))) == ["int"] * 5


def test_parallel_call_passes_each_engine_its_chunk_like_ipyparallel(client: Client) -> None:
    # ipyparallel: calling a @parallel function runs it once per engine on that engine's
    # sub-sequence and concatenates the returned sequences; .map() is the element-wise form.
    @client[:].parallel(block=True)
    def kinds(x: Any) -> List[str]:
        return [type(x).__name__] * len(x)

    assert kinds(list(range(5))) == ["list"] * 5


# -- LoadBalancedView ----------------------------------------------------------------------
def test_load_balanced_apply_async(client: Client) -> None:
    lv = client.load_balanced_view()
    ar = lv.apply_async(add, 2, 3)
    assert ar.get(timeout=10) == 5
    assert ar.engine_id in (0, 1)
    assert ar.data == {}
    assert lv.apply(add, 1, 1).get(timeout=10) == 2
    assert lv.apply_sync(add, 1, 2) == 3


def test_load_balanced_map_with_chunksize(client: Client) -> None:
    lv = client.load_balanced_view()
    amr = lv.map_async(add, range(7), range(7), chunksize=3)
    assert len(amr) == 7
    assert len(amr._records) == 3  # tasks of 3, 3 and 1 items
    assert amr.get(timeout=10) == [2 * x for x in range(7)]
    assert lv.map_sync(add, range(5), range(5), chunksize=2) == [0, 2, 4, 6, 8]
    assert lv.map(add, [], [], block=True) == []


def test_load_balanced_map_chunks_a_long_map_of_cheap_items_and_keeps_a_short_one_per_item(client: Client) -> None:
    """One task per item would cost each item a round trip; a short map keeps the finest balance."""
    lv = client.load_balanced_view()
    engines = len(client)
    short = lv.map_async(add, range(5), range(5))
    assert len(short._records) == 5
    n = 100 * view_module.MAP_TASKS_PER_ENGINE * engines
    long = lv.map_async(add, range(n), range(n))
    assert len(long.records) == view_module.MAP_TASKS_PER_ENGINE * engines
    assert long.get(timeout=60) == [2 * x for x in range(n)]
    assert short.get(timeout=10) == [0, 2, 4, 6, 8]
    on_one = client.load_balanced_view(targets=[0]).map_async(add, range(n), range(n))
    assert len(on_one.records) == view_module.MAP_TASKS_PER_ENGINE
    on_one.get(timeout=60)


def test_load_balanced_unordered_map_yields_in_completion_order(client: Client, tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")

    def item(i: int) -> int:
        if i == 0:
            wait_for_file(gate)
        return i

    lv = client.load_balanced_view()
    amr = lv.map(item, [0, 1], chunksize=1, ordered=False, block=False)
    it = iter(amr)
    assert next(it) == 1  # item 0 is still held by the gate
    assert not amr.ready()
    open(gate, "w").close()
    assert next(it) == 0
    assert sorted(amr.get(timeout=10)) == [0, 1]


def test_load_balanced_publish_data_shows_like_direct_view(client: Client) -> None:
    def publish(x: int) -> int:
        from localpar.datapub import publish_data

        publish_data({"a": x})
        publish_data({"b": x + 1})
        return x

    lar = client.load_balanced_view().apply_async(publish, 1)
    dar = client[0].apply_async(publish, 1)
    lar.get(timeout=10)
    dar.get(timeout=10)
    assert lar.data == dar.data == {"a": 1, "b": 2}
    mar = client[:].apply_async(publish, 1)
    mar.get(timeout=10)
    assert mar.data == [{"a": 1, "b": 2}] * 2
