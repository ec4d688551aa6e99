"""A shared machine: round trip and submit-all while another process burns one core.

A helper process spins in a busy loop for the whole measurement (started
after the tools, killed by its pid after).  localpar and Pool are both up at
once and measured in alternation, round after round, so that both see the
same load; the round trip uses a function from ``__main__`` (the notebook
case) and a module function, submit-all the module function.  localpar is
left as found (engines and callers spin for up to 100 µs unless
``LOCALPAR_SPIN_US`` says otherwise).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from functools import partial
from typing import Any, Dict, List, Type

import psutil

from . import notebook
from .peers import Localpar, Peer, Pool
from .stats import interleaved, median, summary, timed

BURN = "while True:\n    pass\n"


def burn_one_core() -> subprocess.Popen:
    """A child process in a busy loop: one core's worth of competing work."""
    return subprocess.Popen([sys.executable, "-c", BURN])


def measure(workers: int, calls: int, tasks: int, rounds: int, log: Any = print) -> Dict[str, Any]:
    fns = notebook.install()
    kinds = (notebook.MODULE, notebook.MAIN)
    pair: List[Type[Peer]] = [Localpar, Pool]
    peers = {cls.name: cls() for cls in pair}
    started: List[Peer] = []
    rtt: Dict[str, Dict[str, List[float]]] = {name: {k: [] for k in kinds} for name in peers}
    rates: Dict[str, Dict[str, List[float]]] = {name: {notebook.MODULE: []} for name in peers}
    burner = None
    try:
        for peer in peers.values():
            peer.start(workers)
            started.append(peer)
            for kind in kinds:
                peer.submit_many(200, None if kind == notebook.MODULE else fns[kind])  # warm the workers
        burner = burn_one_core()
        time.sleep(0.3)  # the helper is spinning before the clock starts
        burn_cpu0 = sum(psutil.Process(burner.pid).cpu_times()[:2])
        t0 = time.monotonic()
        per_round = max(20, calls // rounds)
        noops = {
            (name, kind): partial(peer.noop, None if kind == notebook.MODULE else fns[kind])
            for name, peer in peers.items()
            for kind in kinds
        }
        for _ in range(rounds):
            for (name, kind), durations in interleaved(noops, per_round, warmup=10).items():  # tools in turn
                rtt[name][kind] += durations
            for name, peer in peers.items():
                rates[name][notebook.MODULE].append(tasks / timed(partial(peer.submit_many, tasks)))
        burned = sum(psutil.Process(burner.pid).cpu_times()[:2]) - burn_cpu0
        wall = time.monotonic() - t0
    finally:
        if burner is not None:
            burner.kill()
            burner.wait(10)
        for peer in started:
            peer.close()
    out: Dict[str, Any] = {"rounds": rounds, "tasks": tasks, "burner_cores": burned / wall if wall else 0.0}
    out["spin_env"] = os.environ.get("LOCALPAR_SPIN_US")
    for name in peers:
        out[name] = {kind: {"rtt": summary(rtt[name][kind])} for kind in kinds}
        module = out[name][notebook.MODULE]
        module["rates"] = rates[name][notebook.MODULE]
        module["submit_rate"] = median(module["rates"])
        for kind in kinds:
            k = out[name][kind]
            rate = f"; {tasks} tasks {k['submit_rate']:.0f}/s" if "submit_rate" in k else ""
            log(
                f"  busy core, {name}, {kind}: round trip p50 {k['rtt']['p50'] * 1e6:.0f} us "
                f"p99 {k['rtt']['p99'] * 1e6:.0f} us{rate}"
            )
    log(f"  the helper burned {out['burner_cores']:.2f} cores meanwhile")
    return out
