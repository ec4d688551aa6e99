"""Hostile values and functions: what unpickles badly in the client, what a task keeps in its
function's closure or attributes (issue 23)."""

from __future__ import annotations

import pytest
from conftest import HANG_GUARD

from localpar import Client, EngineError, RemoteError
from localpar.datapub import publish_data


@pytest.fixture(scope="module")
def c():
    with Client(2) as client:
        yield client


def _exit_on_load(kind: str) -> None:
    raise {"exit": SystemExit, "interrupt": KeyboardInterrupt}[kind]("raised while unpickling")


class ExitsOnLoad:
    """Pickles fine on the engine; unpickling it in the client raises SystemExit or KeyboardInterrupt."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self):
        return _exit_on_load, (self.kind,)


def return_exits_on_load(kind: str) -> ExitsOnLoad:
    return ExitsOnLoad(kind)


def publish_exits_on_load(kind: str) -> int:
    publish_data({"bad": ExitsOnLoad(kind)})
    return 1


@pytest.mark.parametrize("kind", ["exit", "interrupt"])
def test_a_result_raising_systemexit_when_unpickled_fails_only_its_task(c: Client, kind: str) -> None:
    other = c[1].apply_async(sum, [1, 2])
    ar = c[0].apply_async(return_exits_on_load, kind)
    with pytest.raises(RemoteError, match="raised while unpickling"):
        ar.get(timeout=HANG_GUARD)
    assert other.get(timeout=HANG_GUARD) == 3
    assert c[0].apply_sync(sum, [2, 3]) == 5  # the collector lives on


@pytest.mark.parametrize("kind", ["exit", "interrupt"])
def test_a_publication_raising_systemexit_when_unpickled_spares_the_collector(c: Client, kind: str) -> None:
    ar = c[0].apply_async(publish_exits_on_load, kind)
    ar.wait(HANG_GUARD)
    assert ar.ready()
    assert c[1].apply_sync(sum, [2, 3]) == 5
    assert c[0].apply_sync(sum, [2, 3]) == 5


def test_a_main_function_never_sees_what_an_earlier_task_did_to_its_closure_or_attributes(tmp_path) -> None:
    """The README's rule: a task never sees what an earlier task did to its copy of the
    function, though an unchanged function's pickle is reused (closure cells and function
    attributes included).  Functions of ``__main__`` only travel by value from a script."""
    import subprocess
    import sys

    script = tmp_path / "closure.py"
    script.write_text(
        "from localpar import Client\n"
        "def make():\n"
        "    count = 0\n"
        "    def f():\n"
        "        nonlocal count\n"
        "        count += 1\n"
        "        return count\n"
        "    return f\n"
        "f = make()\n"
        "def g():\n"
        "    g.calls = getattr(g, 'calls', 0) + 1\n"
        "    return g.calls\n"
        "with Client(1) as c:\n"
        "    print([c[0].apply_sync(f) for _ in range(4)])\n"
        "    print([c[0].apply_sync(g) for _ in range(4)])\n"
        "    print(f(), g())\n"  # the client's own copies are untouched by the engine's
    )
    import os
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))  # this checkout's localpar
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=HANG_GUARD * 4, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["[1, 1, 1, 1]", "[1, 1, 1, 1]", "1 1"]


def total(a) -> float:
    return float(a.sum())


def test_memory_limit_does_not_count_shared_memory_an_engine_maps() -> None:
    """A 300 MB zero-copy argument is mapped from /dev/shm: those pages are shared with the
    client, not the engine's own, so a 200 MB limit must not kill the engine that sums it."""
    import numpy as np

    a = np.ones(300 * 1000**2 // 8)
    with Client(1, memory_limit="200 MB") as c:
        assert c[0].apply_sync(total, a) == float(a.size)
        assert c[0].apply_sync(total, a) == float(a.size)


def die() -> None:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_queued_balanced_tasks_wait_for_the_replacement_of_the_only_engine() -> None:
    """With restart_dead, the moment every engine is dead is not the end: queued
    load-balanced tasks wait for the replacement and run there."""
    with Client(1, restart_dead=True) as c:
        view = c.load_balanced_view()
        dead = view.apply_async(die)
        queued = [view.apply_async(int, i) for i in range(20)]
        with pytest.raises(EngineError):
            dead.get(timeout=HANG_GUARD)
        outcomes = []
        for i, ar in enumerate(queued):
            try:
                outcomes.append(ar.get(timeout=HANG_GUARD) == i)
            except EngineError:  # handed to the engine before it died: its own pending tasks fail
                outcomes.append(None)
        assert outcomes.count(True) >= 20 - 2 * 2  # all but those in the dead engine's queue (depth 2)
