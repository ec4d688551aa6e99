"""The targets (issues 6 and 13) in one table, and how each is read from a run's results.

Each ``Goal`` says what is compared, the bound (``op`` and ``limit``), the issue
that set it, and how many of 5 consecutive runs must meet it (``runs``: 4, or 5
for the load-balanced submit-all).  ``figure`` reads one number from a run's
results (a ratio, or MB for the two memory goals) and a line of the figures
behind it; ``evaluate`` turns the table into met/missed verdicts for one run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

MB = 1 << 20
BIG = 64 * MB
BOUNDED = 32 * MB  # client growth allowed under a million publications
LOCALPAR, LOCALPAR_DV, POOL = "localpar", "localpar (DirectView)", "multiprocessing.Pool (fork)"
PPE, IPP, DASK = "ProcessPoolExecutor (fork)", "ipyparallel", "dask.distributed"
R = Dict[str, Any]
Figure = Tuple[Optional[float], str]


@dataclass(frozen=True)
class Goal:
    what: str
    op: str  # "<=" or ">="
    limit: float
    issue: int
    figure: Callable[[R], Figure]
    unit: str = "×"
    runs: int = 4  # of 5 consecutive runs

    @property
    def goal(self) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        if self.unit == "×":
            return f"{sign} {self.limit:g}×"
        return f"{sign} {self.limit:g} {self.unit}"

    def met(self, value: float) -> bool:
        return value <= self.limit if self.op == "<=" else value >= self.limit


@dataclass
class Target:
    what: str
    goal: str
    ratio: Optional[float]  # None: could not be measured in this run
    ok: Optional[bool]
    detail: str = ""
    issue: int = 0
    runs: int = 4


# -- reading results ------------------------------------------------------------------------------


def get(r: R, peer: str, *path: Any) -> Optional[float]:
    node: Any = r.get("peers", {}).get(peer)
    return _walk(node, path)


def _walk(node: Any, path: Tuple[Any, ...]) -> Optional[float]:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, (int, float)) and not (isinstance(node, float) and math.isnan(node)):
        return float(node)
    return None


def _ratio(num: Optional[float], den: Optional[float], detail: str) -> Figure:
    if num is None or den is None or den == 0:
        return None, detail
    return num / den, detail


def _us(x: Optional[float]) -> str:
    return "?" if x is None else f"{x * 1e6:.0f} µs"


def _ms(x: Optional[float]) -> str:
    return "?" if x is None else f"{x * 1e3:.1f} ms"


def _rate(x: Optional[float], unit: str = "tasks/s") -> str:
    return "?" if x is None else f"{x:,.0f} {unit}"


def _mbs(x: Optional[float]) -> str:
    return "?" if x is None else f"{x / 1e6:,.0f} MB/s"


def _bw(r: R, peer: str, key: str) -> Optional[float]:
    secs = get(r, peer, key, BIG)
    return BIG / secs if secs else None


def _memcpy(r: R) -> Optional[float]:
    secs = _walk(r.get("limits", {}), ("memcpy", BIG))
    return BIG / secs if secs else None


def _lim(r: R, *path: str) -> Optional[float]:
    return _walk(r.get("limits", {}), path)


def _ratio_of(num: Callable[[R], Optional[float]], den: Callable[[R], Optional[float]], fmt: Callable[..., str]):
    def figure(r: R) -> Figure:
        a, b = num(r), den(r)
        return _ratio(a, b, f"{fmt(a)} vs {fmt(b)}")

    return figure


def _at(peer: str, *path: Any) -> Callable[[R], Optional[float]]:
    return lambda r: get(r, peer, *path)


def _shared(peer: str, kind: str, *path: str) -> Callable[[R], Optional[float]]:
    return lambda r: _walk(r.get("shared", {}), (peer, kind, *path))


def _bandwidth(peer: str, key: str) -> Callable[[R], Figure]:
    def figure(r: R) -> Figure:
        a, b = _bw(r, peer, key), _memcpy(r)
        return _ratio(a, b, f"{_mbs(a)} vs {_mbs(b)}")

    return figure


def _uss(r: R) -> Figure:
    lp = max(r.get("peers", {}).get(LOCALPAR, {}).get("idle_uss") or [math.nan])
    pool = max(r.get("peers", {}).get(POOL, {}).get("idle_uss") or [math.nan])
    if math.isnan(lp) or math.isnan(pool):
        return None, "not measured"
    return (lp - pool) / MB, f"{lp / MB:.1f} MB vs {pool / MB:.1f} MB (measured column: difference in MB)"


def _client_memory(r: R) -> Figure:
    cm = r.get("client_memory")
    if not cm:
        return None, "not measured in this run"
    grown = max(cm["peak_rss_growth"], cm["rss_growth"]) / MB
    return grown, f"peak RSS growth {grown:.1f} MB after {cm['count']:,} publications (measured column: MB)"


def _submit_lb(r: R) -> Figure:
    a, b = get(r, LOCALPAR, "submit_rate"), get(r, POOL, "submit_rate")
    return _ratio(a, b, f"{_rate(a)} vs {_rate(b)} (LoadBalancedView vs `apply_async`)")


def _map(r: R) -> Figure:
    """localpar's better own map (DirectView ``map_sync``, or the LoadBalancedView's) against Pool.map."""
    dv, lb, pool = get(r, LOCALPAR, "map_rate"), get(r, LOCALPAR, "map_lb_rate"), get(r, POOL, "map_rate")
    best = max((x for x in (dv, lb) if x is not None), default=None)
    which = "`c[:].map_sync`" if best is not None and best == dv else "`LoadBalancedView.map`"
    n = r.get("peers", {}).get(POOL, {}).get("map_items")
    items = f"{n:,}" if n else "?"
    return _ratio(best, pool, f"{_rate(best, 'items/s')} ({which}) vs {_rate(pool, 'items/s')}, {items} items")


# -- the table ------------------------------------------------------------------------------------

MAIN_RTT = ("kinds", "main", "rtt", "p50")

GOALS: List[Goal] = [
    Goal("startup vs Pool(fork)", "<=", 1.5, 6, _ratio_of(_at(LOCALPAR, "startup"), _at(POOL, "startup"), _ms)),
    Goal(
        "startup: ipyparallel / localpar", ">=", 100, 6, _ratio_of(_at(IPP, "startup"), _at(LOCALPAR, "startup"), _ms)
    ),
    Goal("startup: dask / localpar", ">=", 10, 6, _ratio_of(_at(DASK, "startup"), _at(LOCALPAR, "startup"), _ms)),
    Goal(
        "round trip p50 vs raw Pipe ping-pong",
        "<=",
        1.3,
        6,
        _ratio_of(_at(LOCALPAR, "rtt", "p50"), lambda r: _lim(r, "pingpong", "p50"), _us),
    ),
    Goal(
        "round trip p99 vs ProcessPoolExecutor p99",
        "<=",
        1.0,
        6,
        _ratio_of(_at(LOCALPAR, "rtt", "p99"), _at(PPE, "rtt", "p99"), _us),
    ),
    Goal(
        "5,000 tasks submit-all: localpar / Pool",
        ">=",
        1.0,
        6,
        _submit_lb,
    ),
    Goal(
        "5,000 tasks submit-all: localpar / ipyparallel",
        ">=",
        50,
        6,
        _ratio_of(_at(LOCALPAR, "submit_rate"), _at(IPP, "submit_rate"), _rate),
    ),
    Goal(
        "publication p50 vs raw Pipe one-way",
        "<=",
        2.0,
        6,
        _ratio_of(_at(LOCALPAR, "pub", "p50"), lambda r: _lim(r, "one_way", "p50"), _us),
    ),
    Goal(
        "publication p50: ipyparallel / localpar",
        ">=",
        8,
        6,
        _ratio_of(_at(IPP, "pub", "p50"), _at(LOCALPAR, "pub", "p50"), _us),
    ),
    Goal(
        "publication p99",
        "<=",
        1.0,
        6,
        lambda r: _ratio(get(r, LOCALPAR, "pub", "p99"), 1e-3, _us(get(r, LOCALPAR, "pub", "p99"))),
        unit="ms",
    ),
    Goal("64 MB returned vs memcpy bandwidth", ">=", 0.5, 6, _bandwidth(LOCALPAR, "array")),
    Goal("64 MB published vs memcpy bandwidth", ">=", 0.5, 6, _bandwidth(LOCALPAR, "pub_array")),
    Goal(
        "64 MB returned: localpar / Pool",
        ">=",
        20,
        6,
        lambda r: _ratio(
            _bw(r, LOCALPAR, "array"),
            _bw(r, POOL, "array"),
            f"{_mbs(_bw(r, LOCALPAR, 'array'))} vs {_mbs(_bw(r, POOL, 'array'))}",
        ),
    ),
    Goal("idle engine USS vs Pool worker + 5 MB", "<=", 5, 6, _uss, unit="MB more"),
    Goal("client memory under a stream of publications", "<=", BOUNDED / MB, 6, _client_memory, unit="MB"),
    # issue 13: where users live
    Goal(
        "round trip p50: `__main__` function / module function",
        "<=",
        1.2,
        13,
        _ratio_of(_at(LOCALPAR, *MAIN_RTT), _at(LOCALPAR, "rtt", "p50"), _us),
    ),
    Goal(
        "round trip p50 of a `__main__` function: localpar / Pool",
        "<=",
        0.5,
        13,
        _ratio_of(_at(LOCALPAR, *MAIN_RTT), _at(POOL, *MAIN_RTT), _us),
    ),
    Goal("5,000 tasks submit-all (LoadBalancedView) / Pool `apply_async`", ">=", 2.0, 13, _submit_lb, runs=5),
    Goal("map of 100,000 tiny items: localpar / Pool.map", ">=", 1.5, 13, _map),
    Goal(
        "startup to first result vs Pool(fork)",
        "<=",
        1.0,
        13,
        _ratio_of(_at(LOCALPAR, "startup"), _at(POOL, "startup"), _ms),
    ),
    Goal(
        "one core busy: round trip p50 of a `__main__` function, localpar / Pool",
        "<=",
        0.5,
        13,
        _ratio_of(_shared(LOCALPAR, "main", "rtt", "p50"), _shared(POOL, "main", "rtt", "p50"), _us),
    ),
    Goal(
        "one core busy: 5,000 tasks submit-all, localpar / Pool",
        ">=",
        1.0,
        13,
        _ratio_of(_shared(LOCALPAR, "module", "submit_rate"), _shared(POOL, "module", "submit_rate"), _rate),
    ),
    Goal("64 MB `bytes` returned vs memcpy bandwidth", ">=", 0.5, 13, _bandwidth(LOCALPAR, "bytes")),
    Goal("64 MB `bytes` published vs memcpy bandwidth", ">=", 0.5, 13, _bandwidth(LOCALPAR, "pub_bytes")),
]


def evaluate(r: R) -> List[Target]:
    """Every goal's verdict in one run: met, missed, or not measured (None)."""
    out = []
    for g in GOALS:
        value, detail = g.figure(r)
        if value is None:
            out.append(Target(g.what, g.goal, None, None, detail or "not measured in this run", g.issue, g.runs))
        else:
            out.append(Target(g.what, g.goal, value, g.met(value), detail, g.issue, g.runs))
    return out
