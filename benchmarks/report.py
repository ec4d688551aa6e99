"""The targets of issue 6, checked as ratios from one run, and the markdown report."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

MB = 1 << 20
LOCALPAR, LOCALPAR_DV, POOL = "localpar", "localpar (DirectView)", "multiprocessing.Pool (fork)"
PPE, IPP, DASK = "ProcessPoolExecutor (fork)", "ipyparallel", "dask.distributed"
BIG = 64 * MB
BOUNDED = 32 * MB  # client growth allowed under a million publications


@dataclass
class Target:
    what: str
    goal: str
    ratio: Optional[float]  # None: could not be measured in this run
    ok: Optional[bool]
    detail: str = ""


def _get(results: Dict[str, Any], peer: str, *path: Any) -> Optional[float]:
    node: Any = results["peers"].get(peer)
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def _ratio(
    what: str, goal: str, num: Optional[float], den: Optional[float], ok: Callable[[float], bool], detail: str = ""
) -> Target:
    if num is None or den is None or den == 0:
        return Target(what, goal, None, None, detail or "not measured in this run")
    ratio = num / den
    return Target(what, goal, ratio, ok(ratio), detail)


def _at_most(
    what: str, goal: str, num: Optional[float], den: Optional[float], limit: float, detail: str = ""
) -> Target:
    return _ratio(what, goal, num, den, lambda ratio: ratio <= limit, detail)


def _at_least(
    what: str, goal: str, num: Optional[float], den: Optional[float], limit: float, detail: str = ""
) -> Target:
    return _ratio(what, goal, num, den, lambda ratio: ratio >= limit, detail)


def targets(r: Dict[str, Any]) -> List[Target]:
    lim = r["limits"]
    memcpy_bw = BIG / lim["memcpy"][BIG] if BIG in lim["memcpy"] else None

    def bw(peer: str, key: str) -> Optional[float]:
        secs = _get(r, peer, key, BIG)
        return BIG / secs if secs else None

    def ms(x: Optional[float]) -> str:
        return "?" if x is None else f"{x * 1e3:.1f} ms"

    def us(x: Optional[float]) -> str:
        return "?" if x is None else f"{x * 1e6:.0f} µs"

    lp_start, pool_start = _get(r, LOCALPAR, "startup"), _get(r, POOL, "startup")
    ipp_start, dask_start = _get(r, IPP, "startup"), _get(r, DASK, "startup")
    lp_p50, lp_p99 = _get(r, LOCALPAR, "rtt", "p50"), _get(r, LOCALPAR, "rtt", "p99")
    lp_rate, pool_rate, ipp_rate = (_get(r, p, "submit_rate") for p in (LOCALPAR, POOL, IPP))
    pub50, pub99 = _get(r, LOCALPAR, "pub", "p50"), _get(r, LOCALPAR, "pub", "p99")
    ipp_pub50 = _get(r, IPP, "pub", "p50")
    lp_uss = max(r["peers"].get(LOCALPAR, {}).get("idle_uss") or [math.nan])
    pool_uss = max(r["peers"].get(POOL, {}).get("idle_uss") or [math.nan])
    out = [
        _at_most("startup vs Pool(fork)", "≤ 1.5×", lp_start, pool_start, 1.5, f"{ms(lp_start)} vs {ms(pool_start)}"),
        _at_least(
            "startup: ipyparallel / localpar", "≥ 100×", ipp_start, lp_start, 100, f"{ms(ipp_start)} vs {ms(lp_start)}"
        ),
        _at_least("startup: dask / localpar", "≥ 10×", dask_start, lp_start, 10, f"{ms(dask_start)} vs {ms(lp_start)}"),
        _at_most(
            "round trip p50 vs raw Pipe ping-pong",
            "≤ 1.3×",
            lp_p50,
            lim["pingpong"]["p50"],
            1.3,
            f"{us(lp_p50)} vs {us(lim['pingpong']['p50'])}",
        ),
        _at_most(
            "round trip p99 vs ProcessPoolExecutor p99",
            "≤ 1×",
            lp_p99,
            _get(r, PPE, "rtt", "p99"),
            1.0,
            f"{us(lp_p99)} vs {us(_get(r, PPE, 'rtt', 'p99'))}",
        ),
        _at_least(
            "5,000 tasks submit-all: localpar / Pool",
            "≥ 1×",
            lp_rate,
            pool_rate,
            1.0,
            f"{lp_rate or 0:.0f} vs {pool_rate or 0:.0f} tasks/s (LoadBalancedView)",
        ),
        _at_least(
            "5,000 tasks submit-all: localpar / ipyparallel",
            "≥ 50×",
            lp_rate,
            ipp_rate,
            50,
            f"{lp_rate or 0:.0f} vs {ipp_rate or 0:.0f} tasks/s",
        ),
        _at_most(
            "publication p50 vs raw Pipe one-way",
            "≤ 2×",
            pub50,
            lim["one_way"]["p50"],
            2.0,
            f"{us(pub50)} vs {us(lim['one_way']['p50'])}",
        ),
        _at_least(
            "publication p50: ipyparallel / localpar", "≥ 8×", ipp_pub50, pub50, 8, f"{us(ipp_pub50)} vs {us(pub50)}"
        ),
        _at_most("publication p99", "≤ 1 ms", pub99, 1e-3, 1.0, us(pub99)),
        _at_least(
            "64 MB returned vs memcpy bandwidth",
            "≥ 0.5×",
            bw(LOCALPAR, "array"),
            memcpy_bw,
            0.5,
            _mbs(bw(LOCALPAR, "array"), memcpy_bw),
        ),
        _at_least(
            "64 MB published vs memcpy bandwidth",
            "≥ 0.5×",
            bw(LOCALPAR, "pub_array"),
            memcpy_bw,
            0.5,
            _mbs(bw(LOCALPAR, "pub_array"), memcpy_bw),
        ),
        _at_least(
            "64 MB returned: localpar / Pool",
            "≥ 20×",
            bw(LOCALPAR, "array"),
            bw(POOL, "array"),
            20,
            _mbs(bw(LOCALPAR, "array"), bw(POOL, "array")),
        ),
    ]
    if math.isnan(lp_uss) or math.isnan(pool_uss):
        out.append(Target("idle engine USS vs Pool worker + 5 MB", "≤ +5 MB", None, None, "not measured"))
    else:
        diff = (lp_uss - pool_uss) / MB
        out.append(
            Target(
                "idle engine USS vs Pool worker + 5 MB",
                "≤ +5 MB",
                diff,
                diff <= 5,
                f"{lp_uss / MB:.1f} MB vs {pool_uss / MB:.1f} MB (ratio column: difference in MB)",
            )
        )
    cm = r.get("client_memory")
    if cm:
        grown = max(cm["peak_rss_growth"], cm["rss_growth"]) / MB
        out.append(
            Target(
                f"client memory after {cm['count']:,} publications",
                f"bounded (≤ {BOUNDED // MB} MB)",
                grown,
                grown <= BOUNDED / MB,
                f"peak RSS growth {grown:.1f} MB (ratio column: MB)",
            )
        )
    return out


def _mbs(a: Optional[float], b: Optional[float]) -> str:
    f = lambda x: "?" if x is None else f"{x / 1e6:,.0f} MB/s"  # noqa: E731
    return f"{f(a)} vs {f(b)}"


# -- markdown -------------------------------------------------------------------------------------


def _fmt(x: Optional[float], scale: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x * scale:,.{digits}f}"


def _bw(p: Dict[str, Any], key: str, n: int) -> Optional[float]:
    secs = p.get(key, {}).get(n)
    return n / secs / 1e6 if secs else None


def absolute_table(r: Dict[str, Any]) -> List[str]:
    head = (
        "| tool | startup ms | shutdown ms | round trip p50 µs | p99 µs | submit-all tasks/s | map items/s "
        "| publication p50 µs | p99 µs | 1 MB returned MB/s | 64 MB returned MB/s | 1 MB published MB/s "
        "| 64 MB published MB/s | idle USS/worker MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, p in r["peers"].items():
        if "skipped" in p:
            lines.append(f"| {name} | skipped: {p['skipped']} |" + " |" * 12)
            continue
        pub = p.get("pub", {})
        cells = [
            _fmt(p["startup"], 1e3, 1),
            _fmt(p["shutdown"], 1e3, 1),
            _fmt(p["rtt"]["p50"], 1e6),
            _fmt(p["rtt"]["p99"], 1e6),
            _fmt(p["submit_rate"], 1),
            _fmt(p["map_rate"], 1),
            _fmt(pub.get("p50"), 1e6),
            _fmt(pub.get("p99"), 1e6),
            *(_fmt(_bw(p, key, n), 1) for key in ("array", "pub_array") for n in (MB, BIG)),
            " / ".join(f"{u / MB:.1f}" for u in p.get("idle_uss") or []) or "–",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lim = r["limits"]
    memcpy = [_fmt(n / lim["memcpy"][n] / 1e6 if n in lim["memcpy"] else None, 1) for n in (MB, BIG)]
    cells = [
        "–",
        "–",
        _fmt(lim["pingpong"]["p50"], 1e6),
        _fmt(lim["pingpong"]["p99"], 1e6),
        "–",
        "–",
        _fmt(lim["one_way"]["p50"], 1e6),
        _fmt(lim["one_way"]["p99"], 1e6),
        *memcpy,
        *memcpy,
        "–",
    ]
    lines.append("| *limit: bare Pipe / memcpy* | " + " | ".join(cells) + " |")
    if "pingpong_spin" in lim:
        spun = [_fmt(lim[k][q], 1e6) for k in ("pingpong_spin",) for q in ("p50", "p99")]
        spun += ["–", "–"] + [_fmt(lim["one_way_spin"][q], 1e6) for q in ("p50", "p99")]
        lines.append("| *floor: bare Pipe, waiting side spinning* | – | – | " + " | ".join(spun) + " |" + " – |" * 5)
    return lines


def target_table(r: Dict[str, Any]) -> List[str]:
    lines = ["| target | goal | measured | result | figures |", "|---|---|---|---|---|"]
    for t in targets(r):
        ratio = "n/a" if t.ratio is None else f"{t.ratio:,.2f}"
        verdict = "n/a" if t.ok is None else ("**pass**" if t.ok else "**FAIL**")
        lines.append(f"| {t.what} | {t.goal} | {ratio} | {verdict} | {t.detail} |")
    return lines


METHOD = """\
Medians unless marked p50/p99.
**Startup**: cluster created → first no-op result back (median of several starts; shutdown likewise).
**Round trip**: one no-op call at a time, sequential (`c[0].apply_sync`, `pool.apply`, `submit().result()`).
**Submit-all**: 5,000 no-op tasks submitted, then all gathered, median of 5 runs (1 for ipyparallel and dask);
localpar through its LoadBalancedView
(the same semantics as `Pool.apply_async`), *localpar (DirectView)* round-robin over `c[i]`.
**Map**: each tool's own map over 5,000 items (median of runs as for submit-all) with its default chunking
(localpar and ipyparallel: `c[:].map_sync`, one chunk per engine; Pool: its automatic chunksize; the executors:
chunksize 1).
**Publication**: the engine publishes `{'k': counter, 't': time.perf_counter()}` every 2 ms (`perf_counter` is
CLOCK_MONOTONIC, one clock for all processes); the reader polls `ar.data` in a loop (with `os.sched_yield()` so that
a client's I/O thread can run), and records seen − published for each new counter. dask: `log_event` on the worker
and a `subscribe_topic` handler that stores the latest event, polled the same way. Limit: a child sending its
`perf_counter` through a bare Pipe to a parent blocked in `recv`.
**Spinning**: a localpar caller in `get()` watches its result's state, and an engine between two tasks while a
caller waits polls its pipe, for up to 100 µs before blocking; one thread of the client (the collector) reads every
pipe and completes every result, so a round trip has at least one thread hand-off in the client. The targets compare
with the issue's bare Pipe, whose ends block, and the *floor* row shows the same Pipe with the waiting side spinning:
the best that technique gives.
**Arrays**: a call returning a float64 array that the worker made once and keeps (array creation is not timed);
*published*: `publish_data(dict(a=arr, t=...))` until `ar.data['a']` is there. localpar hands over a copy-on-write
mapping: the client's first read of every page is not in the figure (≈ 7 ms for 64 MB on this machine).
Limit: `numpy.copyto` between two warm arrays (1 MB fits in cache, hence its very high figure).
**USS**: unique memory of each worker process, idle, after a few no-ops (pages shared with the parent after fork
are not counted)."""


def write(r: Dict[str, Any], path: str, png: str, notes: str = "") -> None:
    m = r["machine"]
    load = r["load"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    if m["env"]:
        env = ", ".join(f"`{k}={v}`" for k, v in m["env"].items())
    else:
        env = "none of " + ", ".join(f"`{k}`" for k in ENV_SHOWN) + " set"
    shared = load["other_cores"] > 0.1 or load["loadavg_max"] > (m["cores"] or 1) * 0.9
    busy = (
        "**The machine was shared with other work while measuring** (other agents' test runs): "
        "expect noisier tails (p99) and somewhat slower figures than on a quiet machine."
        if shared
        else "The machine was otherwise quiet."
    )
    quick = " (**--quick** smoke run: small counts)" if r["quick"] else ""
    lines = [
        "# localpar benchmarks",
        "",
        "Generated by the `benchmarks` package (its module docstrings say what each figure means). Reproduce with:",
        "",
        "```",
        r["command"],
        "```",
        "",
        f"- **date**: {m['date']}, commit {m['commit']}, total run time {r['seconds']:.0f} s{quick}",
        f"- **machine**: {m['cpu']}, {m['cores']} logical cores ({m['physical_cores']} physical), "
        f"{m['memory_gb']:.0f} GB, Linux {m['kernel']}",
        f"- **Python** {m['python']}, **numpy** {m['numpy']}; {versions}",
        f"- **workers**: {r['workers']} per tool; environment: {env} (left as found)",
        f"- **load**: other processes used {load['other_core_seconds']:.0f} core-seconds during the "
        f"{load['wall']:.0f} s run (≈ {load['other_cores']:.2f} of {m['cores']} cores); "
        f"1-min load average up to {load['loadavg_max']:.2f}. {busy}",
        "",
        "## Targets (issue 6), as ratios from this one run",
        "",
        *target_table(r),
        "",
        "## Absolute figures",
        "",
        METHOD,
        "",
        *absolute_table(r),
        "",
    ]
    cm = r.get("client_memory")
    if cm:
        lines += [
            "## Client memory under publications (localpar)",
            "",
            f"One task ran `publish_data({{'i': i}})` {cm['count']:,} times ({cm['rate']:,.0f} publications/s, "
            f"{cm['seconds']:.1f} s); the client applied them to `ar.data` (final `i` = {cm['final_i']}). "
            f"Client RSS {cm['rss_before'] / MB:.0f} MB before; growth {cm['rss_growth'] / MB:+.1f} MB at the end, "
            f"{cm['peak_rss_growth'] / MB:+.1f} MB at peak; USS growth {cm['uss_growth'] / MB:+.1f} MB "
            f"(peak {cm['peak_uss_growth'] / MB:+.1f} MB), sampled every 0.25 s.",
            "",
        ]
    lines += _scaling(r, path, png)
    lines += ["## Notes", "", notes_for(r), ""]
    if notes:
        lines += [notes.strip(), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


ENV_SHOWN = ("OPENBLAS_CORETYPE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _scaling(r: Dict[str, Any], path: str, png: str) -> List[str]:
    sc = r.get("scaling")
    if not sc:
        return []
    image = os.path.relpath(png, os.path.dirname(path) or ".")
    lines = ["## Scaling", "", f"![benchmarks]({image})", ""]
    lines += [
        "Each engine count gets a fresh cluster: startup is the median of several starts, throughput the median of "
        "3 submit-all runs begun right after the start (localpar's Manager process is still starting meanwhile); "
        "with more engines than cores, every tool shares them.",
        "",
        "| tool | engines | startup ms | 5,000 tasks/s |",
        "|---|---|---|---|",
    ]
    for name, rows in sc["engines"].items():
        for row in rows:
            lines.append(f"| {name} | {row['engines']} | {row['startup'] * 1e3:.1f} | {row['submit_rate']:,.0f} |")
    names = list(sc["payload"])
    sizes = sorted(sc["payload"][names[0]]) if names else []
    lines += ["", "Round trip of a call returning an array (ms), and memcpy of the same size:", ""]
    lines += ["| size | " + " | ".join(names) + " | memcpy |", "|---|" + "---|" * (len(names) + 1)]
    for s in sizes:
        cells = [f"{sc['payload'][n][s] * 1e3:.3g}" for n in names] + [f"{sc['memcpy'][s] * 1e3:.3g}"]
        lines.append(f"| {_size(s)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _size(n: int) -> str:
    return f"{n // MB} MB" if n >= MB else f"{n // 1024} KB"


# -- notes ----------------------------------------------------------------------------------------
# Why a target is missed, from profiling localpar (cProfile on the client, a profiler enabled inside an
# engine by a task, timestamps taken in the collector thread).  Shown only when that target fails.

WHY_MISSED = {
    "startup vs Pool(fork)": (
        "localpar forks its engines like Pool, but also creates the task, control and result pipes per engine, the "
        "publication queue, the lifeline and the collector thread, and starts the Manager process (from a thread "
        "of its own, concurrently). On 2 shared cores the Manager's start competes with the first call."
    ),
    "round trip p50 vs raw Pipe ping-pong": (
        "One thread of the client (the collector) reads every pipe and completes every result, so that no wake-up "
        "can be lost between readers; a round trip then hands the GIL from the collector to the waiting caller "
        "once, which costs about a scheduler wake-up on this VM (the earlier core let the caller read for itself "
        "and beat the blocking Pipe, but lost wake-ups: see the concurrency issue). The caller's spin on its "
        "result's state and the engines' spin hide part of it. What remains is Python on both sides: an "
        "AsyncResult (a Future), a record, pickling and unpickling, the engine's stdout capture and timing."
    ),
    "5,000 tasks submit-all: localpar / Pool": (
        "The client is the limit (engines are idle most of the time): each task costs Python in the caller's "
        "thread (AsyncResult, record, pickling, one `write`) and in the collector thread (unpickling the result, "
        "completing the Future), and the two threads take turns on the GIL. The earlier core did both halves in "
        "the submitting thread and was level with Pool (1.01–1.13×); moving the reading to one thread, which the "
        "concurrency issue required so that no wake-up can be lost, costs that. Batching calls and results in "
        "one frame (the speed issue) is the way back."
    ),
    "5,000 tasks submit-all: localpar / ipyparallel": (
        "Same cause as against Pool: the client's per-task work bounds the rate."
    ),
    "publication p50 vs raw Pipe one-way": (
        "A reader polling `ar.data` no longer reads the pipe itself: the collector thread is woken by the "
        "publication, applies it, and the reader sees it at its next look, so the figure has a thread wake-up "
        "and a GIL hand-off the bare Pipe has not, on top of the Python on both sides (pickling the frame, "
        "reading it, applying it to `ar.data`, copying the snapshot)."
    ),
    "publication p50: ipyparallel / localpar": (
        "ipyparallel's own figure moves a lot between runs on this machine (426–1,132 µs p50 over today's runs)."
    ),
    "publication p99": (
        "The tail follows the machine's load: other processes were running on the same 2 cores (see load above)."
    ),
    "64 MB returned vs memcpy bandwidth": (
        "Engines reuse a pooled shared-memory segment once the client's array on it is garbage; the first call "
        "pays for a fresh tmpfs segment (page allocation: `os.write` of 64 MB into a new /dev/shm file ≈ 26 ms, "
        "memcpy ≈ 6.5 ms)."
    ),
    "64 MB published vs memcpy bandwidth": (
        "Same segment path and reuse condition as a returned array. Values over 1 MB are kept out of the "
        "Manager's durable copy, so a big publication costs no extra copy."
    ),
    "64 MB returned: localpar / Pool": (
        "Limited by the fresh-segment path on a first call (see above); Pool pickles in band through its pipe."
    ),
    "round trip p99 vs ProcessPoolExecutor p99": (
        "Tails follow the machine's load: other processes were running on the same 2 cores (see load above)."
    ),
}

GENERAL_NOTES = """\
- ipyparallel and dask run a quarter of the sequential calls and publications of the others (they are 20–100× slower
  per call) and fewer starts (2 and 3); their figures are medians and percentiles all the same.
- ProcessPoolExecutor starts its workers on demand, so its startup is that of one worker; loky is a fresh
  `loky.ProcessPoolExecutor` (its own spawn-like start), not the reusable executor.
- localpar's row uses the LoadBalancedView for submit-all, because that is what `Pool.apply_async` does; the
  *localpar (DirectView)* row shows the same 5,000 tasks pipelined round-robin over `c[i]`.
- The reader polls `ar.data` with `os.sched_yield()` between reads: a tight loop without it starves a client's
  I/O thread (ipyparallel). `time.sleep(0)` would do the same but costs ≈ 85 µs of timer slack on Linux, which
  would be most of what is measured (it made ipyparallel's p50 ≈ 760–950 µs and localpar's ≈ 100 µs).
- memcpy and numpy: no environment variable was changed (OPENBLAS_CORETYPE and friends are recorded above as found).
- Every figure comes from one run of the command above; run it again on a quiet machine for cleaner tails."""


def notes_for(r: Dict[str, Any]) -> str:
    """General notes, then why each missed target was missed."""
    parts = [GENERAL_NOTES]
    marks = r.get("load", {}).get("marks", [])
    if marks:
        stages = ", ".join(f"{m['label']} {m['loadavg'][0]:.1f}" for m in marks[1:])
        parts.append(
            f"- **Load by stage** (1-min load average when each stage ended): {stages}. The bare-Pipe limits are "
            "measured first; when the load rises later, ratios against them come out pessimistic for every tool."
        )
    plain = _get(r, LOCALPAR, "array_plain", BIG)
    warm = _get(r, LOCALPAR, "array", BIG)
    if plain and warm:
        parts.append(
            f"- **Returned arrays in a plain loop**: the array figures above call `gc.collect()` before each call. "
            f"In a plain loop (`x = c[0].apply_sync(f)` repeated, no collect) localpar returned 64 MB at "
            f"{BIG / plain / 1e6:,.0f} MB/s (with collect: {BIG / warm / 1e6:,.0f} MB/s): a result holds no "
            "reference cycle, so rebinding `x` frees the previous array at once and the engine reuses its segment."
        )
    missed = [t for t in targets(r) if t.ok is False]
    if missed:
        parts.append("\n### Missed targets: why\n")
        for t in missed:
            parts.append(f"- **{t.what}** ({t.goal}, measured {t.ratio:,.2f}): {WHY_MISSED.get(t.what, 'see above.')}")
    return "\n".join(parts)
