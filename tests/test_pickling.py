"""Objects that live in the client's process say so when pickled (e.g. sent to engines)."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

from localpar import Client, SerializationError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def c():
    with Client(1) as client:
        yield client


def objects(c):
    view = c[:]
    ar = view.apply_async(abs, -1)
    mar = view.map_async(abs, [1, 2])
    ar.get(timeout=10), mar.get(timeout=10)
    return {
        "Client": c,
        "DirectView": view,
        "LoadBalancedView": c.load_balanced_view(),
        "AsyncResult": ar,
        "AsyncMapResult": mar,
    }


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_client_views_and_results_cannot_be_pickled_and_say_why(c, dumps):
    for name, obj in objects(c).items():
        with pytest.raises(TypeError, match=f"^a localpar {name} cannot be pickled or sent to engines: "):
            dumps(obj)


def test_sending_the_client_to_an_engine_names_it(c):
    with pytest.raises(SerializationError, match="a localpar Client cannot be pickled or sent to engines"):
        c[0].apply_async(lambda client: len(client), c)
    assert c[0].apply_sync(abs, -2) == 2  # nothing was sent; the engine still serves
