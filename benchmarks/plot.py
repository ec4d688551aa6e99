"""docs/benchmarks.png: scaling curves of localpar next to Pool (and memcpy)."""

from __future__ import annotations

from typing import Any, Dict


def draw(r: Dict[str, Any], path: str) -> None:
    sc = r.get("scaling")
    if not sc:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
        return
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    (ax_start, ax_rate), (ax_rtt, ax_bw) = axes
    for name, rows in sc["engines"].items():
        n = [row["engines"] for row in rows]
        ax_start.plot(n, [row["startup"] * 1e3 for row in rows], "o-", label=name)
        ax_rate.plot(n, [row["submit_rate"] for row in rows], "o-", label=name)
    for ax, title, unit in (
        (ax_start, "startup (to first result)", "ms"),
        (ax_rate, "5,000 no-op tasks, submit-all", "tasks/s"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks([row["engines"] for row in next(iter(sc["engines"].values()))])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("engines")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.legend()
    curves = dict(sc["payload"])
    curves["memcpy (limit)"] = sc["memcpy"]
    for name, points in curves.items():
        sizes = sorted(points)
        style = "k--" if name.startswith("memcpy") else "o-"
        ax_rtt.plot(sizes, [points[s] * 1e3 for s in sizes], style, label=name)
        ax_bw.plot(sizes, [s / points[s] / 1e6 for s in sizes], style, label=name)
    for ax, title, unit in (
        (ax_rtt, "call returning an array: round trip", "ms"),
        (ax_bw, "same, as bandwidth", "MB/s"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted(next(iter(sc["payload"].values())))
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t // (1 << 20)}M" if t >= 1 << 20 else f"{t // 1024}K" for t in ticks])
        ax.set_xlabel("array size (bytes)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend()
    m = r["machine"]
    fig.suptitle(f"localpar vs multiprocessing.Pool (fork) — {m['cores']} cores, Python {m['python']}, {m['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
