"""wait_interactive: the text line (tqdm absent or refused), tqdm bars, timeouts."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from localpar import Client
from localpar.client import progress

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def no_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tqdm`` fail, as on a machine without it."""
    for name in [m for m in sys.modules if m == "tqdm" or m.startswith("tqdm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


def gated(gate: str, steps: int) -> bool:
    """Report 1/steps, wait for the gate file, then count up to steps; True if the gate opened."""
    import os
    import time

    from localpar.datapub import report_progress

    report_progress(1, steps)
    deadline = time.monotonic() + 20
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(2, steps + 1):
        time.sleep(0.03)  # each step lasts long enough to be drawn at least once
        report_progress(i, steps)
    return os.path.exists(gate)


def open_gate_when_shown(monkeypatch: pytest.MonkeyPatch, gate: Path, needles: list) -> None:
    """Open the gate once the text line has shown every needle: no guessing at timing."""
    original = progress.status_line

    def spy(ar):
        line = original(ar)
        if all(n in line for n in needles):
            gate.touch()
        return line

    monkeypatch.setattr(progress, "status_line", spy)


def test_text_line_without_tqdm(client, no_tqdm, monkeypatch, tmp_path, capsys):
    assert progress._load_tqdm() is None
    gate = tmp_path / "gate"
    open_gate_when_shown(monkeypatch, gate, ["engine 0: 25%", "engine 1: 25%"])
    ar = client[:].apply_async(gated, str(gate), 4)
    ar.wait_interactive(interval=0.02, timeout=30)
    assert ar.get(timeout=5) == [True, True]
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("\r") and out.endswith("\n") and out.count("\n") == 1
    frames = [f.rstrip() for f in out.rstrip("\n").split("\r")[1:]]
    running = r"0/2 tasks done \| engine 0: 25% \| engine 1: 25% \| \d+\.\d s"
    assert any(re.fullmatch(running, f.strip()) for f in frames)
    assert re.fullmatch(r"2/2 tasks done \| \d+\.\d s", frames[-1].strip())
    counts = [int(re.match(r"\s*(\d+)/2", f).group(1)) for f in frames]  # type: ignore[union-attr]
    assert counts == sorted(counts)


def test_text_line_clears_a_longer_previous_line(client, no_tqdm, monkeypatch, tmp_path, capsys):
    gate = tmp_path / "gate"
    open_gate_when_shown(monkeypatch, gate, ["engine 0: 50%", "engine 1: 50%"])
    client[:].apply_async(gated, str(gate), 2).wait_interactive(interval=0.02, timeout=30)
    frames = capsys.readouterr().out.rstrip("\n").split("\r")[1:]
    assert len(frames[-1]) >= max(len(f) for f in frames)  # padded: nothing of the long line stays visible


def test_widget_false_forces_text_even_with_tqdm(client, capsys):
    pytest.importorskip("tqdm")
    ar = client[:].apply_async(lambda: 7)
    ar.wait_interactive(widget=False, timeout=30)
    out, err = capsys.readouterr()
    assert out.startswith("\r") and out.endswith("\n")
    assert re.fullmatch(r"2/2 tasks done \| \d+\.\d s", out.split("\r")[-1].strip())
    assert "engine" not in out  # the tasks reported no progress of their own
    assert err == ""


def test_widget_true_needs_tqdm(client, no_tqdm):
    ar = client[0].apply_async(lambda: 1)
    with pytest.raises(ImportError, match="tqdm"):
        ar.wait_interactive(widget=True)
    assert ar.get(timeout=10) == 1


def test_tqdm_bars(client, monkeypatch, tmp_path, capsys):
    pytest.importorskip("tqdm")
    gate = tmp_path / "gate"
    ar = client[:].apply_async(gated, str(gate), 4)
    bars = []
    original = progress._Bars.update

    def update(self):
        original(self)
        bars.append((self.main.n, {i: b.n for i, b in self.tasks.items()}))
        if len(self.tasks) == 2:
            gate.touch()

    monkeypatch.setattr(progress._Bars, "update", update)
    ar.wait_interactive(interval=0.02, timeout=30)
    assert ar.get(timeout=5) == [True, True]
    assert bars[-1] == (2, {0: 4, 1: 4})
    assert any(state == (0, {0: 1, 1: 1}) for state in bars)
    err = capsys.readouterr().err
    assert "2/2" in err and "engine 0" in err and "engine 1" in err and "4/4" in err


def test_load_balanced_tasks_are_labelled_by_task(client, tmp_path, capsys):
    pytest.importorskip("tqdm")
    gate = tmp_path / "gate"
    gate.touch()
    ar = client.load_balanced_view().map_async(gated, [str(gate)] * 3, [2, 3, 4], chunksize=1)
    ar.wait_interactive(interval=0.02, timeout=30)
    assert ar.get(timeout=5) == [True, True, True]
    assert progress.task_labels(ar) == ["task 0", "task 1", "task 2"]
    err = capsys.readouterr().err
    assert "3/3" in err and "task 2" in err


def test_timeout_raises_and_ends_the_line(client, no_tqdm, tmp_path, capsys):
    gate = tmp_path / "gate"
    ar = client[:].apply_async(gated, str(gate), 4)
    with pytest.raises(TimeoutError, match="0/2 tasks done"):
        ar.wait_interactive(interval=0.02, timeout=0.3)
    assert not ar.done()
    out = capsys.readouterr().out
    assert out.endswith("\n") and "0/2 tasks done" in out
    gate.touch()
    assert ar.get(timeout=20) == [True, True]


def test_timeout_with_tqdm_closes_the_bars(client, tmp_path, capsys):
    pytest.importorskip("tqdm")
    gate = tmp_path / "gate"
    ar = client[:].apply_async(gated, str(gate), 4)
    with pytest.raises(TimeoutError):
        ar.wait_interactive(interval=0.02, timeout=0.3)
    gate.touch()
    assert ar.get(timeout=20) == [True, True]
    assert "0/2" in capsys.readouterr().err


def test_failed_and_finished_results_return_at_once(client, no_tqdm, capsys):
    def boom() -> None:
        raise ValueError("no")

    ar = client[:].apply_async(boom)
    assert ar.wait(10)
    ar.wait_interactive(timeout=5)  # shows the end state; the error stays for get()
    out = capsys.readouterr().out
    assert re.fullmatch(r"\r\s*2/2 tasks done \| \d+\.\d s\n", out)
    assert not ar.successful()


def test_a_map_counts_its_items_as_ipyparallel(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    ar = client[:].map_async(abs, range(10))  # 10 items in 2 tasks, one per engine
    ar.wait_interactive(widget=False, timeout=30)
    assert "10/10 tasks done" in capsys.readouterr().out
    lb = client.load_balanced_view().map_async(abs, range(100), chunksize=7)  # 100 items in 15 tasks
    lb.wait_interactive(widget=False, timeout=30)
    assert "100/100 tasks done" in capsys.readouterr().out


NOTEBOOK_CELLS = [
    'import sys\nsys.modules["ipywidgets"] = None  # as on a machine with tqdm but without ipywidgets\n'
    "import time\nfrom localpar import Client\nc = Client(1)",
    "ar = c[0].apply_async(time.sleep, 1)\nar.wait_interactive(interval=0.05, timeout=30)",
    "ar.get(timeout=10), c.close()",
]


@pytest.mark.timeout(120)
def test_jupyter_without_ipywidgets_shows_one_clean_updating_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """In a real kernel: no TqdmWarning, no text bars with terminal control codes, one line updated in place."""
    import json

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("tqdm")  # the case at hand: tqdm is there, its widgets are not
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"  # a kernel on this interpreter
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS])
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()

    outputs = nb.cells[1].outputs
    assert [o["output_type"] for o in outputs] == ["display_data"], outputs  # nothing on stderr, no warning
    line = outputs[0]["data"]["text/plain"]
    assert re.fullmatch(r"1/1 tasks done \| \d+\.\d s", line), line  # the last update, in place
    assert "\x1b" not in json.dumps(nb.cells[1].outputs) and "\r" not in line
