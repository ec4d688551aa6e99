"""run_demo: the Data Publication notebook replayed in a terminal, with a live table and a plot."""

from __future__ import annotations

import io
import re

import pytest

from localpar.integrations.demo import format_cell, run_demo

pytestmark = pytest.mark.timeout(60)

ROW = re.compile(r"^\s*\d+\.\d+\s{2}(.*)$")


def table_steps(text: str) -> list[list[int | None]]:
    """Each table line's per-engine step counters (None where an engine has not published yet)."""
    rows = []
    for line in text.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        cells = re.findall(r"i=(\d+)\s+mean\(a\)=\d\.\d{3}|(?<!\S)-(?!\S)", m.group(1))
        rows.append([int(step) if step else None for step in cells])
    return rows


def test_run_demo_prints_repr_simple_data_and_a_live_table() -> None:
    out = io.StringIO()
    assert run_demo(engines=2, steps=3, interval=0.1, plot=False, out=out) == 0
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0] == "<DirectView [0, 1]>"
    assert "ar.data = [{'a': 'hi'}, {'a': 'hi'}]" in lines
    assert re.search(r"^\s+t/s\s+engine 0\s+engine 1$", text, re.M)

    rows = table_steps(text)
    assert len(rows) >= 2, text  # read live, not only once at the end
    assert all(len(r) == 2 for r in rows), text
    for engine in (0, 1):
        steps = [s for r in rows if (s := r[engine]) is not None]
        assert steps == sorted(steps), text  # the counter never goes back
        assert steps[-1] == 2, text  # and reaches steps - 1
    assert "final: step [2, 2] per engine" in text
    assert "plot saved" not in text


def test_run_demo_saves_a_png_plot(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "dp.png"
    out = io.StringIO()
    assert run_demo(engines=2, steps=2, interval=0.05, plot=True, out=out, plot_path=str(path)) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot saved to {path}" in out.getvalue()


def test_run_demo_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        run_demo(engines=1, steps=0, out=io.StringIO())
    with pytest.raises(ValueError):
        run_demo(engines=1, interval=-1, out=io.StringIO())


def test_format_cell() -> None:
    assert format_cell({}) == "-"
    assert format_cell({"a": [0.25, 0.75], "i": 4}) == "i=4   mean(a)=0.500"
