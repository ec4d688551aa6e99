"""publish_data: merge semantics, shapes, live updates and data-before-result ordering."""

from __future__ import annotations

import time

import numpy as np
import pytest

from localpar import Client
from localpar.datapub import publish_data


@pytest.fixture(scope="module")
def c():
    with Client(2) as client:
        yield client


def publish_it():
    from localpar.datapub import publish_data

    publish_data(dict(a="hi"))


def test_seed_simple_publication(c):
    ar = c[:].apply_async(publish_it)
    ar.get(timeout=10)
    assert ar.data == [{"a": "hi"}, {"a": "hi"}]


def test_data_is_a_dict_for_a_single_target_and_empty_before_publication(c):
    ar = c[1].apply_async(time.sleep, 0.2)
    assert ar.data == {}
    ar.get(timeout=10)
    assert ar.data == {}
    ar = c[1].apply_async(publish_it)
    ar.get(timeout=10)
    assert ar.data == {"a": "hi"}


def test_merge_semantics_later_keys_win_others_stay(c):
    def merge():
        publish_data({"a": 1, "b": 1})
        publish_data({"b": 2, "c": 3})

    ar = c[:].apply_async(merge)
    ar.get(timeout=10)
    assert ar.data == [{"a": 1, "b": 2, "c": 3}] * 2


def test_data_is_per_task(c):
    def one(tag):
        publish_data({tag: True})

    first = c[0].apply_async(one, "first")
    second = c[0].apply_async(one, "second")
    second.get(timeout=10)
    assert first.data == {"first": True}
    assert second.data == {"second": True}


def test_numpy_arrays_small_and_big(c):
    def arrays():
        publish_data({"small": np.arange(20.0), "big": np.ones(300_000)})  # big goes through shm

    ar = c[:].apply_async(arrays)
    ar.get(timeout=10)
    for d in ar.data:
        np.testing.assert_array_equal(d["small"], np.arange(20.0))
        assert d["big"].shape == (300_000,) and d["big"].sum() == 300_000


def test_updates_are_seen_live_while_the_task_runs(c):
    def simulation_loop(steps):
        import time

        for i in range(steps):
            publish_data(dict(a=np.random.rand(20), i=i))
            time.sleep(0.05)

    ar = c[:].apply_async(simulation_loop, 20)
    seen = set()
    deadline = time.monotonic() + 20
    while not ar.ready() and time.monotonic() < deadline:
        seen.update(d.get("i") for d in ar.data)
        time.sleep(0.02)
    ar.get(timeout=10)
    assert len(seen - {None}) >= 5  # several intermediate states observed, not just the last
    assert all(d["i"] == 19 and d["a"].shape == (20,) for d in ar.data)


def test_all_data_is_applied_before_the_result_is_ready(c):
    def burst(n):
        for i in range(n):
            publish_data({"i": i, f"k{i % 7}": i})
        return n

    for _ in range(5):
        ar = c[:].apply_async(burst, 2000)
        assert ar.get(timeout=30) == [2000, 2000]
        assert [d["i"] for d in ar.data] == [1999, 1999]
        assert all(d["k6"] == 1999 - (1999 - 6) % 7 for d in ar.data)


def test_data_is_kept_after_the_task_ends(c):
    ar = c[0].apply_async(publish_it)
    ar.get(timeout=10)
    c[0].apply_sync(publish_it)
    assert ar.data == {"a": "hi"}


def test_reading_data_returns_a_snapshot(c):
    ar = c[0].apply_async(publish_it)
    ar.get(timeout=10)
    snapshot = ar.data
    snapshot["a"] = "changed"
    assert ar.data == {"a": "hi"}


def test_publish_outside_an_engine_says_where_it_belongs():
    with pytest.raises(RuntimeError, match="inside a task running on a localpar engine"):
        publish_data({"a": 1})


def test_publish_non_dict_is_a_type_error():
    with pytest.raises(TypeError, match="expects a dict"):
        publish_data([1, 2])  # type: ignore[arg-type]


def test_a_big_array_beside_a_large_inline_value_is_delivered_and_its_segment_reused(c):
    """A publication too big for one pipe frame is spilled to shared memory; the arrays inside
    it still come back to the engine's segment pool once the client drops them."""
    import gc
    import os

    def publish_big_and_wide(n):
        for i in range(n):
            publish_data({"a": np.full(100_000, float(i)), "text": "x" * 10_000, "i": i})

    def pool_sizes():
        from localpar.engine.loop import current_engine

        pool = current_engine().pool
        return len(pool._busy) + len(pool._free)

    for _ in range(5):
        ar = c[0].apply_async(publish_big_and_wide, 3)
        ar.get(timeout=30)
        assert ar.data["i"] == 2 and ar.data["a"][0] == 2.0 and len(ar.data["text"]) == 10_000
        del ar
        gc.collect()
        c[0].apply_sync(os.getpid)  # lets the engine read the client's releases
    assert c[0].apply_sync(pool_sizes) <= 6  # reused, not one new segment per publication


def test_importing_datapub_in_task_code_loads_nothing_of_the_client():
    """Task code on any engine (an ipyparallel one too) imports localpar.datapub: it must not
    pull in the client, its threads or its exit hook."""
    import subprocess
    import sys

    probe = (
        "import atexit, sys\n"
        "hooks = atexit._ncallbacks()\n"
        "import localpar.datapub\n"
        "client_side = ('localpar.client', 'localpar.processes.launch', 'localpar.integrations')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(client_side))\n"
        "print(loaded, atexit._ncallbacks() - hooks, len([m for m in sys.modules if m.startswith('localpar')]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded, hooks, count = done.stdout.rsplit(maxsplit=2)
    assert (loaded, hooks) == ("[]", "0")
    # the package and its engine and wire packages, datapub (and its shim), and the few light modules its names need
    assert int(count) <= 10


class ArrivesBroken:
    """Pickles on the engine, but its unpickling raises in the client (``int("not a number")``)."""

    def __reduce__(self):
        return (int, ("not a number",))


def publish_good_and_bad():
    from localpar.datapub import publish_data

    publish_data({"good": 1, "bad": ArrivesBroken(), "array": __import__("numpy").arange(3)})
    publish_data({"later": "kept too"})
    return "done"


def test_a_value_the_client_cannot_unpickle_loses_only_its_key(c, caplog):
    ar = c[0].apply_async(publish_good_and_bad)
    assert ar.get(timeout=30) == "done"
    data = ar.data
    assert sorted(data) == ["array", "good", "later"]
    assert data["good"] == 1 and data["later"] == "kept too" and list(data["array"]) == [0, 1, 2]
    (error,) = ar.metadata["data_errors"]
    assert "'bad'" in error and "ValueError" in error
    assert any("'bad'" in r.getMessage() for r in caplog.records)  # said where the user sees it
