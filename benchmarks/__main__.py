"""``python -m benchmarks [--quick] [--workers N] [--repeat N]``: run everything, write the report.

``--repeat N`` runs the same command N times in a row, each in a fresh
process, and writes the report of the last run with a section saying, per
target, in how many of the N runs it was met (issue 13 asks for 4 of 5, and
5 of 5 for the load-balanced submit-all).

The order matters: every fork-based tool runs before ipyparallel and dask,
which leave threads behind in this process (forking after that is unsafe, and
localpar would pick forkserver instead of fork).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

from . import limits, machine, memory, notebook, scaling, shared
from .measure import MB, Plan, measure_peer
from .peers import ALL, Dask, Ipyparallel, Localpar, Loky, Peer, Pool


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--workers", type=int, default=2, help="workers per tool (default 2)")
    p.add_argument("--quick", action="store_true", help="small counts, no ipyparallel/dask: a smoke run")
    p.add_argument("--out", default=None, help="markdown report (default docs/benchmarks.md; /tmp for --quick)")
    p.add_argument("--png", default=None, help="plot (default next to the markdown)")
    p.add_argument("--json", default=None, help="also dump the raw figures here")
    p.add_argument("--only", default=None, help="comma-separated tool names to run (substring match)")
    p.add_argument("--publications", type=int, default=None, help="small publications for the client-memory run")
    p.add_argument(
        "--no-curves", action="store_true", help="skip the scaling sweeps and the client-memory run (faster repeats)"
    )
    p.add_argument("--repeat", type=int, default=1, help="run N times in a row (fresh processes); count targets met")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    if args.repeat > 1:
        from .repeat import run_repeated

        return run_repeated(args, sys.argv[1:] if argv is None else argv)
    notebook.install()  # before any pool forks: workers' __main__ must have the functions too
    quick = args.quick
    out = args.out or ("/tmp/localpar-benchmarks-quick.md" if quick else "docs/benchmarks.md")
    png = args.png or os.path.splitext(out)[0] + ".png"
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    watch = machine.LoadWatch()
    results: Dict[str, Any] = {"command": command.strip(), "quick": quick, "workers": args.workers}
    results["machine"] = machine.describe([c for c in ALL if c.module], args.workers)
    results["pickled"] = notebook.pickled_sizes()
    t_start = time.time()

    # -- raw limits ---------------------------------------------------------------------------
    log("limits")
    plan = Plan(workers=args.workers)
    if quick:
        plan = Plan(
            args.workers,
            starts=2,
            calls=300,
            tasks=500,
            map_items=2000,
            map_lb_items=500,
            publications=100,
            array_reps=2,
            kind_batches=2,
            bytes_reps=2,
        )
    lim: Dict[str, Any] = {
        "pingpong": limits.pipe_pingpong(plan.calls),
        "one_way": limits.pipe_one_way(plan.publications, plan.gap),
        "pingpong_spin": limits.pipe_pingpong(plan.calls, spin=True),
        "one_way_spin": limits.pipe_one_way(plan.publications, plan.gap, spin=True),
        "memcpy": {n: limits.memcpy_seconds(n) for n in plan.array_sizes},
    }
    results["limits"] = lim
    log(
        f"  Pipe ping-pong p50 {lim['pingpong']['p50'] * 1e6:.0f} us, "
        f"one-way p50 {lim['one_way']['p50'] * 1e6:.0f} us, "
        + ", ".join(f"memcpy {n // MB} MB {n / s / 1e6:.0f} MB/s" for n, s in lim["memcpy"].items())
    )
    watch.mark("limits")

    # -- the tools, fork-based ones first ---------------------------------------------------------
    wanted = [c for c in ALL if not args.only or any(w.strip() in c.name for w in args.only.split(","))]
    results["peers"] = {}
    for cls in wanted:
        reason = cls.missing()
        if reason is None and quick and cls in (Ipyparallel, Dask):
            reason = "skipped in --quick mode"
        if reason is not None:
            log(f"{cls.name}: SKIPPED: {reason}")
            results["peers"][cls.name] = {"name": cls.name, "skipped": reason}
            continue
        if cls in (Ipyparallel, Dask):  # their first thread rules out fork from here on
            _fork_sensitive(results, args, quick, log, watch)
        log(cls.name)
        lighter = {
            Ipyparallel: plan.scaled(0.25, 2),
            Dask: plan.scaled(0.25, 3),
            Loky: plan.scaled(1.0, 3),  # all the calls, 3 starts, one submit-all and map run
        }
        try:
            results["peers"][cls.name] = measure_peer(cls, lighter.get(cls, plan), log)
        except Exception as exc:  # a broken peer is reported, never fatal
            log(f"  FAILED: {type(exc).__name__}: {exc}")
            results["peers"][cls.name] = {"name": cls.name, "skipped": f"failed: {type(exc).__name__}: {exc}"}
        watch.mark(cls.name)
    _fork_sensitive(results, args, quick, log, watch)

    results["seconds"] = time.time() - t_start
    results["load"] = watch.finish()
    from . import plot, report

    plot.draw(results, png)
    report.write(results, out, png)
    log(f"wrote {out} and {png} in {results['seconds']:.0f} s")
    from .repeat import _print_verdicts

    _print_verdicts(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


def _fork_sensitive(results: Dict[str, Any], args: argparse.Namespace, quick: bool, log: Any, watch: Any) -> None:
    """Shared-machine run, scaling curves, client memory: localpar and Pool, while fork is still safe."""
    if "shared" in results:
        return
    calls, tasks, rounds = (200, 500, 2) if quick else (1000, 5000, 3)
    log("shared machine: one core burned by a helper process")
    results["shared"] = shared.measure(args.workers, calls, tasks, rounds, log)
    watch.mark("shared machine")
    if args.no_curves:
        return
    engines = (1, 2) if quick else (1, 2, 4, 8)
    starts, tasks = (2, 500) if quick else (3, 5000)
    sizes = scaling.PAYLOADS[::2] if quick else scaling.PAYLOADS
    reps = 3 if quick else 9
    curves: Dict[str, Any] = {"engines": {}, "payload": {}, "memcpy": scaling.memcpy_sweep(sizes)}
    log("scaling")
    pair: List[type[Peer]] = [Localpar, Pool]
    for cls in pair:
        curves["engines"][cls.name] = scaling.engines_sweep(cls, engines, starts, tasks, log)
        curves["payload"][cls.name] = scaling.payload_sweep(cls, sizes, args.workers, reps, log)
    results["scaling"] = curves
    watch.mark("scaling")
    count = args.publications or (20_000 if quick else 1_000_000)
    log(f"client memory under {count} publications")
    results["client_memory"] = memory.client_growth_under_publishing(count, args.workers)
    cm = results["client_memory"]
    log(
        f"  {cm['rate']:.0f} publications/s; client RSS growth {cm['rss_growth'] / MB:.1f} MB "
        f"(peak {cm['peak_rss_growth'] / MB:.1f} MB), USS growth {cm['uss_growth'] / MB:.1f} MB"
    )
    watch.mark("client memory")


if __name__ == "__main__":
    sys.exit(main())
