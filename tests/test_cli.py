"""``python -m localpar``: info, demo, usage errors (run as real subprocesses)."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

import localpar
from localpar.integrations import cli

pytestmark = pytest.mark.timeout(120)


def run(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "localpar", *args], cwd=cwd, capture_output=True, text=True, timeout=90
    )  # fmt: skip


def info_rows(text: str) -> dict:
    return dict(line.split(":", 1) for line in text.splitlines())


def test_info(tmp_path):
    proc = run(["info"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {key: value.strip() for key, value in info_rows(proc.stdout).items()}
    assert rows["localpar"] == localpar.__version__
    assert rows["start method"] in ("fork", "forkserver", "spawn")
    assert rows["CPUs"].split()[0] == str(os.cpu_count())
    assert rows["Python"].startswith(platform.python_version())
    assert rows["spin before blocking"].startswith(("off", "100 µs")), rows["spin before blocking"]
    for name in cli.EXTRAS:
        installed = importlib.util.find_spec(name) is not None
        assert (rows[name] != "not installed") == installed, (name, rows[name])


def test_info_reports_missing_extras(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tqdm" else real(name, *a))
    assert cli.main(["info"]) == 0
    rows = info_rows(capsys.readouterr().out)
    assert rows["tqdm"].strip() == "not installed"


def test_version(tmp_path):
    proc = run(["--version"], tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"localpar {localpar.__version__}"


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "required: COMMAND"),
        (["nope"], "invalid choice"),
        (["demo", "--steps", "0"], "--steps: must be at least 1"),
        (["demo", "--engines", "x"], "--engines: invalid"),
        (["demo", "--interval", "-1"], "--interval: must be >= 0"),
    ],
)
def test_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_usage_error_exit_code_from_the_command_line(tmp_path):
    proc = run([], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: python -m localpar")


def console_script() -> Path:
    """The ``localpar`` command installed next to this interpreter (by the console_scripts entry point)."""
    return Path(sys.executable).parent / "localpar"


def test_the_localpar_command_is_installed(tmp_path):
    script = console_script()
    assert script.exists(), f"no {script}: reinstall with pip install -e ."
    proc = subprocess.run([str(script), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"localpar {localpar.__version__}"
    proc = subprocess.run([str(script), "info"], cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert info_rows(proc.stdout)["localpar"].strip() == localpar.__version__
    proc = subprocess.run([str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: localpar ")  # named as the user typed it


def test_demo(tmp_path):
    proc = run(["demo", "--engines", "2", "--steps", "3", "--interval", "0.05", "--no-plot"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "engine 0" in proc.stdout and "engine 1" in proc.stdout
    assert "engine 2" not in proc.stdout
    assert re.search(r"i=2\b", proc.stdout)  # the last of 3 steps was seen
    assert list(tmp_path.iterdir()) == []  # --no-plot: no file written


def test_demo_plot(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "out" / "plot.png"
    target.parent.mkdir()
    proc = run(
        ["demo", "--engines", "2", "--steps", "2", "--interval", "0.05", "--plot", "--plot-path", str(target)], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_passes_the_options(monkeypatch):
    import localpar.integrations.demo

    calls = []

    def fake_run_demo(**kw):
        calls.append(kw)
        return 7

    monkeypatch.setattr(localpar.integrations.demo, "run_demo", fake_run_demo)
    assert cli.main(["demo", "--engines", "3", "--steps", "4", "--interval", "0.5", "--plot"]) == 7
    assert calls == [dict(engines=3, steps=4, interval=0.5, plot=True)]
    assert cli.main(["demo"]) == 7
    assert calls[-1] == dict(engines=None, steps=10, interval=1.0, plot=None)


def test_demo_interrupted(monkeypatch, capsys):
    import localpar.integrations.demo

    def interrupted(**kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(localpar.integrations.demo, "run_demo", interrupted)
    assert cli.main(["demo"]) == 130
    assert "interrupted" in capsys.readouterr().err
