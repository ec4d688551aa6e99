"""The IPython "Data Publication API" notebook, replayed in a terminal: ``python -m localpar demo``.

Each engine runs a mock simulation that publishes ``dict(a=<20 random numbers>, i=<step>)``
every `interval` seconds; the client reads ``ar.data`` every half interval while the
tasks run and prints one table line per read, so the data is seen arriving live.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Optional, TextIO, cast

from ..client.client import Client
from ..engine.datapub import publish_data


def publish_it() -> None:
    """The notebook's "simple publication": publish one small dict."""
    publish_data(dict(a="hi"))


def simulation_loop(steps: int = 10, interval: float = 1.0) -> int:
    """The notebook's mock simulation: publish an array and the step counter at each step."""
    import numpy as np

    for i in range(steps):
        publish_data(dict(a=np.random.rand(20), i=i))
        time.sleep(interval)
    return steps


def format_cell(d: Dict[str, Any]) -> str:
    """One engine's published state as ``i=3 mean(a)=0.512`` (or ``-`` before its first step)."""
    if "i" not in d:
        return "-"
    a = d.get("a")
    mean = float(sum(a) / len(a)) if a is not None and len(a) else float("nan")
    return f"i={d['i']:<3} mean(a)={mean:.3f}"


def format_row(t: float, data: List[Dict[str, Any]], width: int = 22) -> str:
    """A table line: seconds since submission, then one cell per engine."""
    return f"{t:7.2f}  " + " ".join(format_cell(d).ljust(width) for d in data).rstrip()


def format_header(ids: List[int], width: int = 22) -> str:
    return "    t/s  " + " ".join(f"engine {e}".ljust(width) for e in ids).rstrip()


def plot_data(data: List[Dict[str, Any]], path: str) -> str:
    """Save the notebook's plot (each engine's ``a``, a legend, the time step as title) as a PNG.

    Returns the file's absolute path, so the user is told where to find it.
    """
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend change

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for engine, d in enumerate(data):
        if "a" in d:
            ax.plot(d["a"], label=f"engine: {engine}")
    steps = [d["i"] for d in data if "i" in d]
    ax.set_title(f"Data published at time step: {steps[0] if steps else '-'}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return os.path.abspath(path)


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def run_demo(
    engines: Optional[int] = None,
    steps: int = 10,
    interval: float = 1.0,
    plot: Optional[bool] = None,
    out: Optional[TextIO] = None,
    plot_path: str = "data_publication.png",
) -> int:
    """Run the data publication workflow on a fresh cluster; return an exit code.

    `plot` None means: save a PNG to `plot_path` (by default data_publication.png in the
    current directory) if matplotlib is installed; the absolute path is printed.
    Returns 1 if a plot was asked for and matplotlib is missing, else 0.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if interval < 0:
        raise ValueError(f"interval must be >= 0, got {interval}")
    out = sys.stdout if out is None else out
    if plot is None:
        plot = _have_matplotlib()
    elif plot and not _have_matplotlib():
        print("matplotlib is not installed: pip install matplotlib, or run without a plot", file=out)
        return 1

    def say(*args: Any) -> None:
        print(*args, file=out, flush=True)

    with Client(engines) as c:
        dv = c[:]
        dv.block = False
        say(repr(dv))

        say("\n# Simple publication")
        ar = dv.apply_async(publish_it)
        ar.get(timeout=30)
        say("ar.data =", ar.data)

        say(f"\n# Simulation loop: {steps} steps, one every {interval:g} s; ar.data read every {interval / 2:g} s")
        ar = dv.apply_async(simulation_loop, steps, interval)
        say(format_header(c.ids))
        poll = max(interval / 2, 0.01)
        start = time.monotonic()
        while True:
            finished = ar.wait(poll)
            say(format_row(time.monotonic() - start, cast(List[Dict[str, Any]], ar.data)))
            if finished:
                break
        ar.get(timeout=0)  # raise here if an engine failed
        final = cast(List[Dict[str, Any]], ar.data)
        say(f"\nfinal: step {[d.get('i') for d in final]} per engine, in {ar.elapsed:.2f} s")
        if plot:
            say("plot saved to", plot_data(final, plot_path))
    return 0
