"""Every multiprocessing start method gives working engines (fork is the default without threads)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from localpar import Client
from localpar.client.client import default_start_method


def publish_and_return():
    from localpar.datapub import publish_data

    publish_data({"x": np.arange(5)})
    return "done"


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_each_start_method_runs_and_publishes(method):
    with Client(2, start_method=method) as c:
        assert c.start_method == method
        ar = c[:].apply_async(publish_and_return)
        assert ar.get(timeout=60) == ["done", "done"]
        assert [d["x"].tolist() for d in ar.data] == [[0, 1, 2, 3, 4]] * 2
        assert (
            c[0].apply_sync(
                lambda: 5,
            )
            == 5
        )  # a lambda travels by value


def test_default_is_forkserver_once_threads_run():
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert default_start_method() == "forkserver"
    finally:
        stop.set()
        thread.join()


def test_script_without_main_guard_is_not_rerun_by_engines(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            from localpar import Client
            print("script body ran")
            c = Client(2, start_method="forkserver")
            print(c[:].apply_sync(lambda: 3))
            c.close()
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["script body ran", "[3, 3]"]
