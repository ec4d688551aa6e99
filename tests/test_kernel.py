"""IPython on the engines (``localpar/engine/kernel.py``): a notebook run cell by cell in a
real kernel (``%px %matplotlib inline``, a figure per engine, ``display(HTML(...))``, the
``%%px --stream`` format), IPython loaded only when code needs it, and engines without
IPython (an environment where it cannot be imported) still running apply and execute."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent

NOTEBOOK_CELLS = [
    "from localpar import Client\nrc = Client(2)",
    "%px %matplotlib inline",
    "%px import matplotlib.pyplot as plt",
    "%%px --block\nplt.plot([1, 2, 3]); plt.show()",
    "%%px --targets 0\nfrom IPython.display import display, HTML\ndisplay(HTML('<b>x</b>'))",
    "%%px --stream\nprint('hello from', 'engine')",
    "%%px --stream\nimport sys\n_ = sys.stdout.write('no newline')\n6 * 7",
    "%%px --stream\nprint('partial')\n1 / 0",
    "%%px --stream\nimport sys, time\nfor i in range(3):\n"
    "    _ = sys.stdout.write(f'\\rstep {i}'); time.sleep(0.05)\nprint()",
    "ar = rc[1].execute(\"from IPython.display import HTML\\ndisplay(HTML('<i>y</i>'))\", block=True)\nar.outputs",
    "rc.close()",
]


def _texts(outputs: List[Dict[str, Any]]) -> List[str]:
    return [o["data"]["text/plain"] for o in outputs if o["output_type"] == "display_data"]


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Any:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    tmp = tmp_path_factory.mktemp("kernel")
    spec_dir = tmp / "jupyter" / "kernels" / "python3"  # a kernel on this interpreter
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
    mp.setenv("MPLBACKEND", "agg")
    try:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS])
        nbclient.NotebookClient(nb, timeout=90, kernel_name="python3", allow_errors=True, resources={
            "metadata": {"path": str(ROOT)}  # the kernel imports this worktree's localpar
        }).execute()  # fmt: skip
    finally:
        mp.undo()
    return nb


def test_magics_set_up_without_output(notebook: Any) -> None:
    for cell in notebook.cells[:3]:
        assert cell.outputs == [], cell.outputs  # %matplotlib inline ran on the engines, silently


def test_a_figure_per_engine_as_image_png(notebook: Any) -> None:
    outputs = notebook.cells[3].outputs
    labels = [o for o in outputs if o["data"].get("text/plain", "").startswith("[output:")]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert sorted(o["data"]["text/plain"] for o in labels) == ["[output:0]", "[output:1]"], outputs
    assert sorted(o["metadata"]["engine"] for o in figures) == [0, 1]
    for figure in figures:
        assert figure["output_type"] == "display_data"
        assert figure["data"]["image/png"].startswith("iVBORw0KGgo")  # a base64 PNG
    for i, o in enumerate(outputs):  # each figure right under its engine's label
        if "image/png" in o["data"]:
            assert outputs[i - 1]["data"]["text/plain"] == f"[output:{o['metadata']['engine']}]"


def test_display_html_on_an_engine(notebook: Any) -> None:
    outputs = notebook.cells[4].outputs
    assert [o["output_type"] for o in outputs] == ["display_data", "display_data"], outputs
    assert outputs[0]["data"] == {"text/plain": "[output:0]"}
    assert outputs[1]["data"]["text/html"] == "<b>x</b>" and outputs[1]["metadata"] == {"engine": 0}


def test_stream_is_one_line_per_engine(notebook: Any) -> None:
    """ipyparallel in a kernel: each engine's stream is one output, updated in place."""
    outputs = notebook.cells[5].outputs
    assert all(o["output_type"] == "display_data" for o in outputs), outputs
    assert sorted(_texts(outputs)) == ["[stdout:0] hello from engine\n", "[stdout:1] hello from engine\n"]


def test_text_without_newline_does_not_run_into_the_result(notebook: Any) -> None:
    texts = [t.replace("\x1b[0;31m", "").replace("\x1b[0m", "") for t in _texts(notebook.cells[6].outputs)]
    assert sorted(t for t in texts if t.startswith("[stdout:")) == ["[stdout:0] no newline", "[stdout:1] no newline"]
    results = sorted(re.sub(r":\d+\]", ":n]", t) for t in texts if t.startswith("Out["))
    assert results == ["Out[0:n]: 42", "Out[1:n]: 42"], texts  # each its own output


def test_streamed_errors_are_labelled_without_localpar_frames(notebook: Any) -> None:
    outputs = notebook.cells[7].outputs
    # Both errors go to stderr; the kernel may send them as one stream output or two (it merges
    # what it flushes at once), so they are split at their labels.
    stderr = "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stderr")
    errors = re.split(r"(?m)^(?=\[\d+:execute\]$)", stderr)
    errors = [e for e in errors if e]
    assert sorted(e.splitlines()[0] for e in errors) == ["[0:execute]", "[1:execute]"], outputs
    for text in errors:
        assert "ZeroDivisionError: division by zero" in text and "Cell In[" in text
        assert "localpar" not in text and "File " not in text
    assert sorted(_texts(outputs)) == ["[stdout:0] partial\n", "[stdout:1] partial\n"]
    assert outputs[-1]["output_type"] == "error" and outputs[-1]["evalue"] == "2 errors"


def test_progress_lines_stay_one_output_per_engine(notebook: Any) -> None:
    """``\\r`` progress from two engines at once: never broken at an engine switch; each line
    keeps its last version, as ipyparallel shows it."""
    outputs = notebook.cells[8].outputs
    assert sorted(_texts(outputs)) == [f"[stdout:{e}] step 2\n" for e in (0, 1)], outputs


def test_execute_outputs_are_ipyparallels_shape(notebook: Any) -> None:
    outputs = notebook.cells[9].outputs
    assert outputs[0]["output_type"] == "execute_result", outputs
    shown = outputs[0]["data"]["text/plain"]
    assert "'text/html': '<i>y</i>'" in shown and "'transient': {}" in shown and "'metadata': {}" in shown


def _run(script: str, env: Dict[str, str], tmp_path: Path) -> Dict[str, Any]:
    path = tmp_path / "probe.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=150, env=env, cwd=str(ROOT)
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _env(**extra: str) -> Dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*extra.pop("path", "").split(os.pathsep), str(ROOT)]).strip(os.pathsep)
    env.update(extra)
    return env


LAZY = """
    import json, sys
    from localpar import Client
    assert "IPython" not in sys.modules
    def loaded():
        import sys
        return "IPython" in sys.modules
    def show():
        from IPython.display import display
        display({"shown": 1})
        return "back"
    out = {}
    with Client(1, start_method="{method}") as c:
        out["after_apply"] = c[0].apply_sync(loaded)
        ar = c[0].apply_async(show)
        out["apply_display"] = [ar.get(30), ar.outputs]
        out["after_display"] = c[0].apply_sync(loaded)
        c[0].execute("a = 5", block=True)
        out["after_execute"] = c[0].apply_sync(loaded)
    print(json.dumps(out))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ipython_is_loaded_only_when_code_needs_it(tmp_path: Path, method: str) -> None:
    """apply work never loads IPython; a task importing it gets the shell (display() is an
    output, not a print); the first cell loads it."""
    out = _run(LAZY.replace("{method}", method), _env(), tmp_path)
    assert out["after_apply"] is False
    assert out["apply_display"] == ["back", [{"data": {"text/plain": "{'shown': 1}"}, "metadata": {}, "transient": {}}]]
    assert out["after_display"] is True and out["after_execute"] is True


BLOCKER = """
    import sys

    class NoIPython:
        '''This environment has no IPython: as if it were not installed.'''

        def find_spec(self, name, path=None, target=None):
            if name == "IPython" or name.startswith("IPython."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoIPython())
"""

WITHOUT = """
    import json, sys
    from localpar import Client, RemoteError
    out = {}
    with Client(2, start_method="spawn") as c:
        out["apply"] = c[:].apply_sync(pow, 2, 5)
        ar = c[0].execute("print('plain')\\nx = 2\\nx * 21", silent=False, block=True)
        out["execute"] = [ar.get().execute_result["data"]["text/plain"], ar.stdout, ar.get().stdout]
        out["count"] = ar.get().execution_count
        try:
            c[0].execute("a = 5\\n%whos", block=True)
        except RemoteError as e:
            out["magic"] = [e.ename, e.evalue, e.traceback]
        try:
            c[1].execute("def f():\\n    return 1 / 0\\nf()", block=True)
        except RemoteError as e:
            out["error"] = [e.ename, e.traceback]
        out["still"] = c[:].apply_sync(pow, 3, 2)
        def probe():
            import importlib.util
            try:
                import IPython
                return "imported"
            except ImportError:
                return "missing"
        out["probe"] = c[0].apply_sync(probe)
    print(json.dumps(out))
"""


def test_engines_without_ipython_run_apply_and_plain_execute(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))  # the engines' environment
    out = _run(WITHOUT, _env(path=str(site)), tmp_path)
    assert out["probe"] == "missing"  # the blocker works in the engines
    assert out["apply"] == [32, 32] and out["still"] == [9, 9]
    assert out["execute"] == ["42", "plain\n", "plain\n"] and out["count"] == 1
    ename, evalue, tb = out["magic"]
    assert ename == "SyntaxError" and "'%whos'" in evalue and "IPython is not importable" in evalue
    assert "localpar" not in tb
    ename, tb = out["error"]
    assert ename == "ZeroDivisionError" and 'File "<execute>", line 3' in tb and "localpar" not in tb


def test_displays_come_in_order_with_stdout() -> None:
    """A display goes after what was printed before it, though prints are coalesced and sent
    later (``output``); a figure-sized one (spilled to shared memory) too."""
    pytest.importorskip("IPython")
    from localpar import Client

    def shows() -> int:
        from IPython.display import display

        print("before")
        display({"small": 1})
        print("between", end="")
        display({"big": "x" * 20000})  # more than one atomic frame
        print(" after")
        return 7

    with Client(1) as c:
        c[0].execute("pass", block=True)  # the shell, whether or not this process had IPython loaded
        ar = c[0].apply_async(shows)
        assert ar.get(30) == 7
        kinds = [(name, piece if name != "display" else sorted(piece["data"]["text/plain"])[:1])
                 for name, piece in ar.records[0].output]  # fmt: skip
    assert [k for k, _ in kinds] == ["stdout", "display", "stdout", "display", "stdout"], kinds
    assert ar.stdout == "before\nbetween after\n"
    assert [list(o["data"]) for o in ar.outputs] == [["text/plain"], ["text/plain"]]
    assert len(ar.outputs[1]["data"]["text/plain"]) > 20000


def test_cells_run_on_after_clear() -> None:
    """``clear()`` empties the namespace; the shell puts back what it keeps there."""
    pytest.importorskip("IPython")
    from localpar import Client

    with Client(1) as c:
        c[0].execute("a = 1", block=True)
        c.clear(block=True)
        reply = c[0].execute("b = 2\nb * 21", silent=False, block=True).get()
        assert reply.execute_result["data"]["text/plain"] == "42"
        assert c[0].apply_sync(lambda: "a" in globals()) is False


def test_an_interrupted_cell_shows_no_localpar_frame() -> None:
    pytest.importorskip("IPython")
    from localpar import Client, RemoteError

    with Client(1) as c:
        ar = c[0].execute("import time\nprint('go', flush=True)\ntime.sleep(30)")
        assert ar.wait_until(lambda: "go" in ar.stdout, 20)
        c.interrupt()
        with pytest.raises(RemoteError) as info:
            ar.get(20)
        assert info.value.ename == "KeyboardInterrupt"
        assert "Cell In[" in info.value.traceback and "localpar" not in info.value.traceback
        assert c[0].execute("1 + 1", silent=False, block=True).get().text == "2"  # the engine goes on


INHERITED = """
    import json
    from IPython.core.interactiveshell import InteractiveShell
    from localpar import Client
    InteractiveShell.instance()  # the client's own shell, as in an IPython session
    def shell_type():
        from IPython import get_ipython
        return type(get_ipython()).__name__
    out = {}
    with Client(1, start_method="fork") as c:
        out["before"] = c[0].apply_sync(shell_type)
        c[0].execute("a = 1", block=True)
        out["after"] = c[0].apply_sync(shell_type)
    print(json.dumps(out))
"""


def test_a_forked_engine_never_uses_the_clients_shell(tmp_path: Path) -> None:
    """An engine forked from IPython drops the shell it inherited; its own comes at the first cell."""
    pytest.importorskip("IPython")
    out = _run(INHERITED, _env(), tmp_path)
    assert out == {"before": "NoneType", "after": "EngineShell"}
