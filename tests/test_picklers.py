"""``view.use_cloudpickle()`` / ``use_pickle()`` / ``use_dill()``: where a ``__main__`` function's
globals come from (the client's values, or the engine's namespace), per Client."""

from __future__ import annotations

import sys
from typing import Iterator

import pytest

from localpar import AsyncResult, Client, interactive

pytestmark = pytest.mark.timeout(60)


@interactive
def read_x() -> str:
    return x  # noqa: F821  (resolved as in a notebook: __main__ on the client, the namespace on the engine)


@interactive
def read_x_for(i: int) -> str:
    return x  # noqa: F821


@pytest.fixture()
def client_x() -> Iterator[None]:
    # The functions' own globals: __main__'s when this module was imported (an IPython shell
    # made by an earlier test in this process puts another module in sys.modules["__main__"]).
    namespace = read_x.__globals__
    assert read_x_for.__globals__ is namespace
    namespace["x"] = "client"
    try:
        yield
    finally:
        del namespace["x"]


def test_use_pickle_resolves_globals_on_the_engine_and_use_cloudpickle_sends_the_clients(client_x: None) -> None:
    with Client(2) as c:
        view = c[:]
        view.push({"x": "engine"}, block=True)
        assert view.apply_sync(read_x) == ["client", "client"]  # the default: cloudpickle's rule
        view.use_pickle()
        view.push({"x": "engine"}, block=True)
        assert view.apply_sync(read_x) == ["engine", "engine"]
        assert view.map_sync(read_x_for, range(2)) == ["engine", "engine"]  # a map's function too
        assert c.load_balanced_view().apply_sync(read_x) == "engine"  # the whole client switched
        view.use_cloudpickle()
        assert view.apply_sync(read_x) == ["client", "client"]
        with Client(1) as other:  # another client keeps its own setting
            view.use_pickle()
            assert other[0].apply_sync(read_x) == "client"


def test_the_switches_return_what_ipyparallel_returns() -> None:
    with Client(2) as c:
        ar = c[:].use_cloudpickle()
        assert isinstance(ar, AsyncResult) and ar.get(timeout=30) == [None, None]
        view = c[:]
        view.block = True
        assert view.use_pickle() == [None, None]
        assert c[0].use_cloudpickle().get(timeout=30) is None


def test_use_dill_needs_dill_and_then_sends_the_clients_values(client_x: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(1) as c:
        view = c[:]
        view.use_pickle()
        monkeypatch.setitem(sys.modules, "dill", None)  # as if not installed
        with pytest.raises(ImportError, match="pip install dill"):
            view.use_dill()
        assert c.main_globals == "pickle"  # unchanged by the refused switch
        monkeypatch.setitem(sys.modules, "dill", type(sys)("dill"))  # as if installed
        view.use_dill().get(timeout=30)
        view.push({"x": "engine"}, block=True)
        assert view.apply_sync(read_x) == ["client"]
