"""The parallel magics in a real IPython shell: what the peer suite cannot show
(its %autopx tests need the Hub, its grouping tests need display() on the engines)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from typing import Any, Iterator

import pytest
from conftest import HANG_GUARD
from test_streaming import Watcher

from localpar import Client

pytest.importorskip("IPython")
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ip() -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IPYTHONDIR"] = tmp
        shell = InteractiveShell.instance(config=config, colors="nocolor")
        try:
            yield shell
        finally:
            InteractiveShell.clear_instance()
            os.environ.pop("IPYTHONDIR", None)


@pytest.fixture(scope="module")
def rc(ip: Any) -> Iterator[Client]:
    with Client(2) as c:  # made inside IPython: %px is registered on all its engines
        yield c


def test_client_made_in_ipython_registers_px(ip: Any, rc: Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert {"px", "pxresult", "pxconfig", "autopx"} <= set(ip.magics_manager.magics["line"])
    assert "px" in ip.magics_manager.magics["cell"]
    ip.run_line_magic("px", "import os; pid = os.getpid()")
    assert rc[:].pull("pid", block=True) == list(rc.engine_pids().values())


def test_group_outputs_engine_and_stream(ip: Any, rc: Client, capsys: pytest.CaptureFixture[str]) -> None:
    cell = "import sys\nprint('out', 1)\nprint('err', file=sys.stderr)\n6 * 7"
    capsys.readouterr()
    ip.run_cell_magic("px", "--group-outputs=engine --no-stream --block", cell)
    out = capsys.readouterr().out
    lines = [re.sub(r"^Out\[(\d):\d+\]", r"Out[\1:n]", line) for line in out.splitlines()]
    assert lines == ["[stdout:0] out 1", "Out[0:n]: 42", "[stdout:1] out 1", "Out[1:n]: 42"]
    ip.run_cell_magic("px", "--stream --targets 1", "print('streamed')")
    captured = capsys.readouterr()
    assert captured.out == "[stdout:1] \nstreamed\n"  # streamed output is always labelled, as in ipyparallel


def test_autopx_sends_cells_to_the_engines(ip: Any, rc: Client, capsys: pytest.CaptureFixture[str]) -> None:
    view = rc.activate([1], "_one")
    capsys.readouterr()
    ip.run_line_magic("autopx_one", "")
    ip.run_cell("where = 'engine'\nwhere")
    ip.run_cell("1 / 0")
    ip.run_cell("%autopx_one")
    out, err = capsys.readouterr()
    assert out.startswith("%autopx enabled") and out.rstrip().endswith("%autopx disabled")
    assert "Out[1:" in out and "'engine'" in out
    assert "ZeroDivisionError" in err and "1 errors" in out  # streamed as it came, then only counted
    assert "where" not in ip.user_ns  # ran on the engine, not here
    assert view.pull("where") == ["engine"]


def test_stream_shows_output_before_the_task_ends(ip: Any, rc: Client, tmp_path: Any) -> None:
    """The cell waits for a file that the test creates only once it has seen the cell's first
    print shown by ``%%px --stream``: output shown only at the end would never release it."""
    path = str(tmp_path / "go")
    cell = (
        "import os, time\nprint('before')\nt0 = time.monotonic()\n"
        f"while not os.path.exists({path!r}) and time.monotonic() - t0 < 20:\n    time.sleep(0.01)\n"
        f"print('after' if os.path.exists({path!r}) else 'not released')"
    )
    out = Watcher("[stdout:0] \nbefore\n")

    def release() -> None:
        if out.seen.wait(HANG_GUARD):
            open(path, "w").close()

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        with contextlib.redirect_stdout(out):
            ip.run_cell_magic("px", "--stream --targets 0", cell)
    finally:
        releaser.join(HANG_GUARD)
    assert out.getvalue() == "[stdout:0] \nbefore\nafter\n"
