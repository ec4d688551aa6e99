"""Measure one tool through its adapter: startup, round trip, throughput, arrays, memory."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, List, Type

from .memory import idle_uss
from .peers import Peer
from .stats import clock, median, repeat, summary, timed

MB = 1 << 20
BIG = 64 * MB


@dataclass
class Plan:
    """How much of each measurement to do, per tool."""

    workers: int = 2
    starts: int = 5
    calls: int = 2000
    tasks: int = 5000
    map_items: int = 5000
    publications: int = 500
    gap: float = 0.002  # seconds the engine sleeps between two publications
    array_sizes: tuple = (MB, 64 * MB)
    array_reps: int = 5
    batches: int = 5  # submit-all and map runs per tool; the median is reported

    def scaled(self, factor: float, starts: int) -> Plan:
        """A lighter plan for slow tools (fewer calls, fewer starts)."""
        return Plan(
            self.workers,
            starts,
            max(20, int(self.calls * factor)),
            self.tasks,
            self.map_items,
            max(20, int(self.publications * factor)),
            self.gap,
            self.array_sizes,
            max(2, self.array_reps // 2),
            1,
        )


def measure_peer(cls: Type[Peer], plan: Plan, log: Any = print) -> Dict[str, Any]:
    """Every figure for one tool; the last of the timed starts stays up for the rest."""
    out: Dict[str, Any] = {"name": cls.name, "version": cls.version()}
    starts: List[float] = []
    stops: List[float] = []
    peer = cls()
    for i in range(plan.starts):
        peer = cls()
        starts.append(timed(partial(peer.start, plan.workers)))
        if i < plan.starts - 1:
            stops.append(timed(peer.close))
    out["startup"] = median(starts)
    out["startups"] = starts
    log(f"  startup median {out['startup'] * 1e3:.1f} ms  {[round(s * 1e3, 1) for s in starts]}")
    try:
        for _ in range(20):  # every worker has run something before we weigh it
            peer.noop()
        peer.submit_many(4 * plan.workers)
        time.sleep(0.3)
        out["idle_uss"] = idle_uss(peer.pids())
        log(f"  idle USS per worker {[round(u / MB, 1) for u in out['idle_uss']]} MB")

        out["rtt"] = summary(repeat(peer.noop, plan.calls, warmup=min(50, plan.calls // 10)))
        log(f"  round trip p50 {out['rtt']['p50'] * 1e6:.0f} us  p99 {out['rtt']['p99'] * 1e6:.0f} us")

        peer.submit_many(min(200, plan.tasks))  # warm up
        submits = [timed(lambda: peer.submit_many(plan.tasks)) for _ in range(plan.batches)]
        out["submit_s"] = median(submits)
        out["submit_rate"] = plan.tasks / out["submit_s"]
        out["map_s"] = median([timed(lambda: peer.map(plan.map_items)) for _ in range(plan.batches)])
        out["map_rate"] = plan.map_items / out["map_s"]
        log(
            f"  {plan.tasks} tasks: {out['submit_rate']:.0f}/s (median of {[round(plan.tasks / s) for s in submits]})"
            f"   map {plan.map_items}: {out['map_rate']:.0f}/s"
        )

        if cls.can_publish:
            lat = peer.publish_latencies(plan.publications, plan.gap)
            out["pub"] = summary(lat)
            log(
                f"  publication p50 {out['pub']['p50'] * 1e6:.0f} us  p99 {out['pub']['p99'] * 1e6:.0f} us "
                f"({len(lat)} seen of {plan.publications})"
            )

        out["array"] = {}
        out["pub_array"] = {}
        for nbytes in plan.array_sizes:
            out["array"][nbytes] = _array_seconds(peer, nbytes, plan.array_reps)
            line = f"  return {nbytes // MB} MB: {nbytes / out['array'][nbytes] / 1e6:.0f} MB/s"
            if cls.can_publish and _publishes_arrays(peer):
                secs = []
                for _ in range(plan.array_reps):
                    gc.collect()  # as for returned arrays: the last one is really gone
                    secs.append(peer.publish_array(nbytes))
                out["pub_array"][nbytes] = median(secs)
                line += f"   publish: {nbytes / out['pub_array'][nbytes] / 1e6:.0f} MB/s"
            log(line)
        out["array_plain"] = {BIG: _array_seconds(peer, BIG, plan.array_reps, collect=False)}
        log(f"  return 64 MB in a plain loop (no gc.collect): {BIG / out['array_plain'][BIG] / 1e6:.0f} MB/s")
    finally:
        stops.append(timed(peer.close))
    out["shutdown"] = median(stops)
    log(f"  shutdown median {out['shutdown'] * 1e3:.1f} ms")
    return out


def _publishes_arrays(peer: Peer) -> bool:
    return type(peer).publish_array is not Peer.publish_array


def _array_seconds(peer: Peer, nbytes: int, reps: int, collect: bool = True) -> float:
    """Median round trip of a call returning a (worker-cached) array of `nbytes`.

    With `collect`, a full ``gc.collect()`` first makes sure the previous array is
    gone (a tool may reuse its buffer); without, it is a plain user loop.
    """
    peer.array(nbytes)  # the worker makes and caches it
    times = []
    for _ in range(reps):
        if collect:
            gc.collect()
            peer.noop()  # warm the call path again after the collection
        t0 = clock()
        arr = peer.array(nbytes)
        times.append(clock() - t0)
        assert arr.nbytes >= nbytes and arr[-1] == 1.0
        del arr
    return median(times)
