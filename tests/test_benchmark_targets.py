"""The benchmark suite's own bookkeeping (no cluster, no timing): targets, verdicts, the
notebook cell, the JSON round trip.  The report must not call a missed target met."""

from __future__ import annotations

import json
import pickle
import sys
from typing import Any, Dict, List

import cloudpickle

from benchmarks import notebook, repeat, report, targets

BIG = targets.BIG


def _run(lp_rate: float, pool_rate: float, main_p50: float = 2e-4) -> Dict[str, Any]:
    """A results dict with just what a few goals read."""
    return {
        "limits": {"pingpong": {"p50": 1e-4}, "one_way": {"p50": 1e-4}, "memcpy": {BIG: 0.01}},
        "peers": {
            targets.LOCALPAR: {
                "submit_rate": lp_rate,
                "rtt": {"p50": 1e-4},
                "kinds": {"main": {"rtt": {"p50": main_p50}}},
                "bytes": {BIG: 0.04},
            },
            targets.POOL: {"submit_rate": pool_rate, "kinds": {"main": {"rtt": {"p50": 4e-4}}}},
        },
    }


def _verdict(r: Dict[str, Any], what: str) -> targets.Target:
    return next(t for t in targets.evaluate(r) if t.what == what)


LB = "5,000 tasks submit-all (LoadBalancedView) / Pool `apply_async`"


def test_each_goal_is_marked_met_or_missed_with_its_ratio() -> None:
    t = _verdict(_run(3000, 1000), LB)
    assert (t.ratio, t.ok, t.goal, t.issue) == (3.0, True, "≥ 2×", 13)
    t = _verdict(_run(1500, 1000), LB)
    assert (t.ratio, t.ok) == (1.5, False)
    rel = _verdict(_run(1, 1, main_p50=1.3e-4), "round trip p50: `__main__` function / module function")
    assert rel.ok is False and rel.ratio is not None and abs(rel.ratio - 1.3) < 1e-9
    assert _verdict(_run(1, 1), "64 MB `bytes` returned vs memcpy bandwidth").ratio == 0.25


def test_a_goal_without_its_figures_is_not_measured_rather_than_missed() -> None:
    t = _verdict(_run(1, 1), "startup: ipyparallel / localpar")
    assert t.ratio is None and t.ok is None


def _rows(runs: List[Dict[str, Any]]) -> Dict[str, str]:
    return {line.split(" | ")[1]: line for line in report.repeat_table(runs) if line.startswith(("| 6 ", "| 13 "))}


def test_repeat_table_counts_runs_met_and_wants_every_run_for_the_balanced_submit_all() -> None:
    runs = [_run(3000, 1000)] * 4 + [_run(1000, 1000)]  # met in 4 of 5
    rows = _rows(runs)
    lb = rows[LB]
    assert "4 of 5 | 5 of 5 | **MISSED**" in lb
    old = rows["5,000 tasks submit-all: localpar / Pool"]  # ≥ 1×: met in all 5
    assert "5 of 5 | 4 of 5 | **met**" in old
    four = [_run(1, 1, main_p50=1e-4)] * 4 + [_run(1, 1, main_p50=2e-4)]
    rows = _rows(four)
    assert "4 of 5 | 4 of 5 | **met**" in rows["round trip p50: `__main__` function / module function"]


def test_notebook_functions_belong_to_main_and_travel_by_value() -> None:
    fns = notebook.install()
    main = vars(sys.modules["__main__"])
    for kind in (notebook.MAIN, notebook.LAMBDA, notebook.CLOSURE):
        f = fns[kind]
        assert f.__module__ == "__main__" and f.__globals__ is main
        assert f.__code__.co_code in cloudpickle.dumps(f)  # the bytecode itself, not a reference
    assert fns[notebook.CLOSURE].__closure__
    assert len(pickle.dumps(fns[notebook.MAIN])) < 100  # plain pickle: by name
    assert notebook.pickled_sizes()[notebook.LAMBDA]["pickle"] is None


def test_a_runs_json_reads_back_with_integer_sizes(tmp_path: Any) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_run(3000, 1000)))
    back = repeat.load(str(path))
    assert back["limits"]["memcpy"][BIG] == 0.01
    assert _verdict(back, "64 MB `bytes` returned vs memcpy bandwidth").ratio == 0.25
