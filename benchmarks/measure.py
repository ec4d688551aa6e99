"""Measure one tool through its adapter: startup, round trip, throughput, arrays, bytes, memory.

Round trip, submit-all and map are measured for each kind of no-op (``notebook``:
a module function, then a function, lambda and closure defined in ``__main__``)
back to back, so that the module and ``__main__`` figures share the same moment
of the run.  A kind the tool cannot send (plain pickle and a lambda) is probed
with one call and recorded as not applicable, with the error.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Type

from . import notebook
from .memory import idle_uss
from .peers import Localpar, Peer
from .stats import clock, interleaved, median, summary, timed

MB = 1 << 20
BIG = 64 * MB


@dataclass
class Plan:
    """How much of each measurement to do, per tool."""

    workers: int = 2
    starts: int = 5
    calls: int = 2000
    tasks: int = 5000
    map_items: int = 100_000
    map_lb_items: int = 5000  # LoadBalancedView.map, one task per item
    publications: int = 500
    gap: float = 0.002  # seconds the engine sleeps between two publications
    array_sizes: tuple = (MB, 64 * MB)
    array_reps: int = 5
    batches: int = 5  # submit-all and map runs per tool; the median is reported
    kind_batches: int = 3  # the same for the __main__ kinds
    bytes_reps: int = 3

    def scaled(self, factor: float, starts: int) -> Plan:
        """A lighter plan for slow tools (fewer calls, fewer starts)."""
        return Plan(
            self.workers,
            starts,
            max(20, int(self.calls * factor)),
            self.tasks,
            self.map_items,
            self.map_lb_items,
            max(20, int(self.publications * factor)),
            self.gap,
            self.array_sizes,
            max(2, self.array_reps // 2),
            1,
            1,
            2,
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

        _kinds(peer, plan, out, log)

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
        out["bytes"] = {BIG: _array_seconds(peer, BIG, plan.bytes_reps, what="bytes")}
        line = f"  return 64 MB bytes: {BIG / out['bytes'][BIG] / 1e6:.0f} MB/s"
        out["pub_bytes"] = {}
        if cls.can_publish and _publishes_arrays(peer):
            secs = []
            for _ in range(plan.bytes_reps):
                gc.collect()
                secs.append(peer.publish_array(BIG, "bytes"))
            out["pub_bytes"][BIG] = median(secs)
            line += f"   publish: {BIG / out['pub_bytes'][BIG] / 1e6:.0f} MB/s"
        log(line)
        out["array_plain"] = {BIG: _array_seconds(peer, BIG, plan.array_reps, collect=False)}
        log(f"  return 64 MB in a plain loop (no gc.collect): {BIG / out['array_plain'][BIG] / 1e6:.0f} MB/s")
    finally:
        stops.append(timed(peer.close))
    out["shutdown"] = median(stops)
    log(f"  shutdown median {out['shutdown'] * 1e3:.1f} ms")
    return out


def _kinds(peer: Peer, plan: Plan, out: Dict[str, Any], log: Any) -> None:
    """Round trip, submit-all and map for each kind of no-op; module-function figures also at the top level."""
    every = notebook.install()
    fns: Dict[str, Optional[Callable[..., Any]]] = {notebook.MODULE: None}  # None: the adapter's tasks.noop
    fns.update({kind: every[kind] for kind in type(peer).notebook})
    usable: Dict[str, Optional[Callable[..., Any]]] = {}
    kinds: Dict[str, Dict[str, Any]] = {}
    for kind, fn in fns.items():
        try:
            peer.noop(fn)
            usable[kind] = fn
            kinds[kind] = {}
        except Exception as exc:  # plain pickle and a lambda: the tool cannot, which is the figure
            kinds[kind] = {"na": f"{type(exc).__name__}: {exc}"}
    out["kinds"] = kinds
    map_items = min(plan.map_items, type(peer).map_items_max or plan.map_items)
    out["map_items"] = map_items
    calls = {kind: partial(peer.noop, fn) for kind, fn in usable.items()}  # in turn: see stats.interleaved
    for kind, durations in interleaved(calls, plan.calls, warmup=min(50, plan.calls // 10)).items():
        kinds[kind]["rtt"] = summary(durations)
    for kind, fn in usable.items():
        peer.submit_many(min(200, plan.tasks), fn)  # warm up
        batches = plan.batches if kind == notebook.MODULE else plan.kind_batches
        submits = [timed(partial(peer.submit_many, plan.tasks, fn)) for _ in range(batches)]
        kinds[kind]["submit_s"] = median(submits)
        kinds[kind]["submit_rate"] = plan.tasks / median(submits)
        kinds[kind]["submit_rates"] = [plan.tasks / s for s in submits]
    for kind, fn in usable.items():
        batches = plan.batches if kind == notebook.MODULE else plan.kind_batches
        kinds[kind]["map_rate"] = map_items / median([timed(partial(peer.map, map_items, fn)) for _ in range(batches)])
    if isinstance(peer, Localpar) and peer.balanced:
        for kind, fn in usable.items():
            if kind not in (notebook.MODULE, notebook.MAIN):
                continue
            kinds[kind]["map_lb_rate"] = plan.map_lb_items / timed(partial(peer.map_balanced, plan.map_lb_items, fn))
    for kind, k in kinds.items():
        if "na" in k:
            log(f"  {kind}: n/a ({k['na'][:80]})")
            continue
        lb = f"   LB map {k['map_lb_rate']:.0f}/s" if "map_lb_rate" in k else ""
        log(
            f"  {kind}: round trip p50 {k['rtt']['p50'] * 1e6:.0f} us p99 {k['rtt']['p99'] * 1e6:.0f} us   "
            f"{plan.tasks} tasks {k['submit_rate']:.0f}/s {[round(r) for r in k['submit_rates']]}   "
            f"map {map_items} {k['map_rate']:.0f}/s{lb}"
        )
    module = kinds[notebook.MODULE]
    out["rtt"] = module["rtt"]
    out["submit_s"], out["submit_rate"], out["map_rate"] = module["submit_s"], module["submit_rate"], module["map_rate"]
    if "map_lb_rate" in module:
        out["map_lb_rate"] = module["map_lb_rate"]


def _publishes_arrays(peer: Peer) -> bool:
    return type(peer).publish_array is not Peer.publish_array


def _array_seconds(peer: Peer, nbytes: int, reps: int, collect: bool = True, what: str = "array") -> float:
    """Median round trip of a call returning a (worker-cached) array (or ``bytes``) of `nbytes`.

    With `collect`, a full ``gc.collect()`` first makes sure the previous array is
    gone (a tool may reuse its buffer); without, it is a plain user loop.
    """
    get = peer.payload_bytes if what == "bytes" else peer.array
    get(nbytes)  # the worker makes and caches it
    times = []
    for _ in range(reps):
        if collect:
            gc.collect()
            peer.noop()  # warm the call path again after the collection
        t0 = clock()
        arr = get(nbytes)
        times.append(clock() - t0)
        assert len(memoryview(arr).cast("B")) >= nbytes and arr[-1] == 1
        del arr
    return median(times)
