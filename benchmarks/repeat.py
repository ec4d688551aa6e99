"""``--repeat N``: the same run N times in a row, then per target how many runs met it.

Each run is a fresh ``python -m benchmarks`` process (ipyparallel and dask leave
threads behind, which would rule out fork for the next run's tools), writing its
figures as JSON; this process reads them back, and writes the last run's
report with a section counting, per target, the runs that met it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

from .targets import GOALS, evaluate


def load(path: str) -> Dict[str, Any]:
    """A run's JSON, with the integer keys (byte sizes) JSON turned into strings made integers again."""

    def keys(pairs: List[Any]) -> Dict[Any, Any]:
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in pairs}

    with open(path) as f:
        return json.load(f, object_pairs_hook=keys)


def _child_argv(args: argparse.Namespace, out: str, js: str) -> List[str]:
    argv = [sys.executable, "-m", "benchmarks", "--workers", str(args.workers), "--out", out, "--json", js]
    if args.quick:
        argv.append("--quick")
    if args.only:
        argv += ["--only", args.only]
    if args.publications:
        argv += ["--publications", str(args.publications)]
    if args.no_curves:
        argv.append("--no-curves")
    return argv


def run_repeated(args: argparse.Namespace, argv: List[str]) -> int:
    from . import plot, report

    n = args.repeat
    out = args.out or ("/tmp/localpar-benchmarks-quick.md" if args.quick else "docs/benchmarks.md")
    png = args.png or os.path.splitext(out)[0] + ".png"
    runs: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="localpar-bench-") as tmp:
        for i in range(n):
            print(f"=== run {i + 1} of {n}", flush=True)
            md, js = os.path.join(tmp, f"run{i}.md"), os.path.join(tmp, f"run{i}.json")
            subprocess.run(_child_argv(args, md, js), check=True)
            runs.append(load(js))  # the run itself printed its verdicts
    final = dict(runs[-1])
    final["command"] = "python -m benchmarks " + " ".join(argv)
    final["repeat_runs"] = runs
    plot.draw(final, png)
    report.write(final, out, png)
    print()
    print("\n".join(report.repeat_table(runs)))
    print(f"wrote {out} and {png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in final.items() if k != "repeat_runs"} | {"runs": runs}, f, indent=1, default=str)
    return 0


def _print_verdicts(r: Dict[str, Any]) -> None:
    for g, t in zip(GOALS, evaluate(r)):
        if t.ok is None:
            continue
        print(f"  {'met   ' if t.ok else 'MISSED'} {t.ratio:8.2f}  {g.goal:>10}  {g.what}", flush=True)
