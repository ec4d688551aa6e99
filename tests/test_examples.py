"""The examples run: the data publication script, and the notebook executed in a real kernel."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.timeout(90)
def test_data_publication_script(tmp_path: Path) -> None:
    script = EXAMPLES / "data_publication.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--engines", "2", "--steps", "3", "--interval", "0.1", "--no-plot"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "<DirectView [0, 1]>"
    assert lines[1] == "ar.data = [{'a': 'hi'}, {'a': 'hi'}]"
    steps = [int(s) for s in re.findall(r"i=(\d+)\s+mean\(a\)=", proc.stdout)]
    assert steps and max(steps) == 2, proc.stdout
    assert "final time step per engine: [2, 2]" in lines
    assert not (tmp_path / "data_publication.png").exists()


def _processes_with_marker(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("LOCALPAR_NOTEBOOK_TEST") == marker:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def _text(output: dict) -> str:
    if output["output_type"] == "stream":
        return output["text"]
    return output.get("data", {}).get("text/plain", "")


@pytest.mark.timeout(180)
def test_data_publication_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")

    # A 'python3' kernelspec that runs this interpreter, first on the path: the notebook
    # must see this environment's localpar whatever kernels the user has installed.
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (localpar tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # Marks the kernel and everything it starts, to check that nothing outlives it.
    marker = uuid.uuid4().hex
    monkeypatch.setenv("LOCALPAR_NOTEBOOK_TEST", marker)

    work = tmp_path / "run"
    work.mkdir()
    path = work / "data_publication.ipynb"
    shutil.copy(EXAMPLES / "data_publication.ipynb", path)
    nb = nbformat.read(str(path), as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "saved with outputs"

    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError on any error

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    for cell in code:
        assert not [o for o in cell.outputs if o["output_type"] == "error"], cell.source

    def outputs_of(start: str) -> list:
        cells = [cell for cell in code if cell.source.startswith(start)]
        assert len(cells) == 1, start
        return cells[0].outputs

    assert "<DirectView [0, 1]>" in [_text(o) for o in outputs_of("c = Client(2)")]
    assert "[{'a': 'hi'}, {'a': 'hi'}]" in [_text(o) for o in outputs_of("ar.wait(10)")]

    live = outputs_of("from IPython.display import clear_output")
    assert [o["output_type"] for o in live] == ["display_data"]  # redrawn in place: one figure left
    assert live[0]["data"]["image/png"]
    status = outputs_of("c.status()")
    assert "<table" in status[0]["data"]["text/html"] and "idle" in status[0]["data"]["text/plain"]
    final = outputs_of("data = ar.data")
    assert any("image/png" in o.get("data", {}) for o in final)

    # The notebook closed its client and nbclient shut the kernel down: no process is left.
    deadline = time.monotonic() + 15
    while _processes_with_marker(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with_marker(marker) == []
