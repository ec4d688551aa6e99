"""A thread that polls ``ar.data`` or ``ar.ready()`` in a tight loop does not hold off the
collector thread that updates them (``asyncresult.give_way``).

To make the difference certain rather than a matter of timing, the interpreter's switch
interval is raised to far beyond the test's guard: a poller that never released the GIL
would keep the collector out until the guard ends the loop.
"""

from __future__ import annotations

import sys
import time
from typing import Iterator

import pytest

from localpar import Client
from localpar.datapub import publish_data

GUARD = 10.0  # seconds; the switch interval below is three times that


def publish_after(path: str) -> str:
    import os
    import time

    deadline = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.001)
    publish_data({"state": "published"})
    return "done"


@pytest.fixture
def long_switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(3 * GUARD)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.mark.parametrize("look", ["data", "ready"])
def test_a_tight_polling_loop_lets_the_collector_apply_what_arrives(tmp_path, long_switch_interval, look: str) -> None:
    go = tmp_path / "go"
    with Client(1) as c:
        ar = c[0].apply_async(publish_after, str(go))
        go.touch()
        deadline = time.monotonic() + GUARD
        seen = False
        while time.monotonic() < deadline:  # the poll under test: no sleep, no blocking call
            if (ar.data.get("state") == "published") if look == "data" else ar.ready():
                seen = True
                break
        assert seen, f"polling ar.{look} kept the collector out for {GUARD} s"
        assert ar.get(timeout=GUARD) == "done"
