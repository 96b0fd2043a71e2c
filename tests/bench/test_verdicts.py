"""The verdict machinery of the benchmarks (``benchmarks.targets``, ``benchmarks.runner``): the
median of per-round ratios decides, the spread is kept beside it, a miss says by how much, and
result files are numbered per day. Pure functions on hand-made figures: no server, no timing."""

from __future__ import annotations

import math
from typing import Any

import pytest

from benchmarks.runner import day_runs, next_run
from benchmarks.targets import (
    evaluate,
    format_spread,
    median_spread,
    off_by,
    per_round_ratios,
)


def _rounds(**series: list[float]) -> dict[str, Any]:
    """A pooled result whose ``per_round`` holds the given figures round by round."""
    n = len(next(iter(series.values())))
    per_round = [{k: v[i] for k, v in series.items()} for i in range(n)]
    pooled = {k: sum(v) / n for k, v in series.items()}
    return {**pooled, "per_round": per_round, "rounds": n}


def test_median_of_per_round_ratios_not_ratio_of_pooled_figures() -> None:
    # one slow round for both systems (the machine, not the systems): the pooled means would
    # give 0.5 / 0.62 ... while every round says jetloom is 0.5x the other
    jl = _rounds(transitions_per_s=[500.0, 100.0, 600.0, 550.0, 520.0])
    lim = _rounds(transitions_per_s=[1000.0, 200.0, 1200.0, 1100.0, 1040.0])
    ratios = per_round_ratios(jl, lim, lambda m: m["transitions_per_s"])
    assert ratios == pytest.approx([0.5] * 5)
    jl2 = _rounds(transitions_per_s=[500.0, 900.0, 600.0, 300.0, 520.0])
    ratios2 = per_round_ratios(jl2, lim, lambda m: m["transitions_per_s"])
    assert ratios2 == pytest.approx([0.5, 4.5, 0.5, 300 / 1100, 0.5])
    med, lo, hi = median_spread(ratios2)
    assert (med, lo, hi) == pytest.approx((0.5, 300 / 1100, 4.5))  # one wild round moves no verdict


def test_median_of_an_even_number_of_rounds_is_the_mean_of_the_middle_two() -> None:
    assert median_spread([1.0, 3.0, 2.0, 10.0]) == (2.5, 1.0, 10.0)


def test_rounds_must_pair_up_and_missing_figures_are_left_out() -> None:
    a = _rounds(p50_ms=[2.0, 3.0, 4.0])
    b = _rounds(p50_ms=[1.0, 0.0, 2.0])
    assert per_round_ratios(a, b, lambda m: m["p50_ms"]) == [2.0, 2.0]  # the 0 denominator is dropped
    with pytest.raises(ValueError, match="3 rounds against 2"):
        per_round_ratios(a, _rounds(p50_ms=[1.0, 1.0]), lambda m: m["p50_ms"])
    with pytest.raises(ValueError, match="no per-round ratios"):
        median_spread([])
    # a result of one measurement (no per_round) is one round of its pooled figure
    assert per_round_ratios({"runs_per_s": 30.0}, {"runs_per_s": 10.0}, lambda m: m["runs_per_s"]) == [3.0]


@pytest.mark.parametrize(
    ("measured", "op", "bound", "expected"),
    [
        (1.56, "<=", 1.3, 1.2),  # 20 % too slow
        (1.3, "<=", 1.3, None),
        (1.0, "<", 1.0, 1.0),  # a strict bound missed exactly: 1.0x off, still a miss
        (0.45, ">=", 0.6, 0.6 / 0.45),
        (0.6, ">=", 0.6, None),
        (0.0, ">=", 0.5, math.inf),
    ],
)
def test_a_miss_says_by_how_much(measured: float, op: str, bound: float, expected: float | None) -> None:
    got = off_by(measured, op, bound)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def _chain_doc(jl_p50: list[float], lim_p50: list[float], jl_tps: list[float], lim_tps: list[float]) -> dict[str, Any]:
    def system(p50: list[float], tps: list[float]) -> dict[str, Any]:
        m = _rounds(p50_ms=p50, transitions_per_s=tps, runs_per_s=[t / 3 for t in tps])
        m["latency"] = {"p50_ms": m.pop("p50_ms")}
        m.update(wall_s=1.0, transitions=300, cpu_s={"engine": 0.1}, cpu_us_per_transition={"engine": 300.0})
        return m

    a = {"jetloom": system(jl_p50, jl_tps), "limit": system(lim_p50, lim_tps), "peer": system(lim_p50, lim_tps)}
    b = {"jetloom": system(jl_p50, jl_tps), "limit": system(lim_p50, lim_tps), "peer": system(lim_p50, lim_tps)}
    return {
        "machine": {"cores": 2},
        "scenarios": {
            "a": {"results": a},
            "b": {"inflight": 100, "saturation": 300, "results": {"inflight": b, "saturated": b}},
        },
    }


def test_evaluate_decides_by_the_median_and_keeps_the_spread() -> None:
    doc = _chain_doc(
        jl_p50=[2.6, 2.4, 9.0, 2.5, 2.6],  # one round 4.5x the limit's: the median ignores it
        lim_p50=[2.0, 2.0, 2.0, 2.0, 2.0],
        jl_tps=[600.0, 700.0, 300.0, 650.0, 620.0],
        lim_tps=[1000.0, 1000.0, 1000.0, 1000.0, 1000.0],
    )
    targets = {t["id"]: t for t in evaluate(doc)}
    a = targets["a.p50_vs_limit"]
    assert a["target"] == 1.3 and a["op"] == "<="
    assert a["measured"] == pytest.approx(1.3)  # median of 1.3, 1.2, 4.5, 1.25, 1.3
    assert a["verdict"] == "pass" and a["off_by"] is None
    assert a["rounds"] == 5 and a["spread"] == pytest.approx([1.2, 4.5])
    assert format_spread(a) == "1.200–4.500 (5 rounds)"
    # pooled, the same figures would miss: (2.6+2.4+9+2.5+2.6)/5 / 2 = 1.91
    assert "pooled over the rounds 1.910" in a["detail"]
    b = targets["b.tps_vs_limit.inflight"]
    assert b["target"] == 0.6 and b["measured"] == pytest.approx(0.62)
    assert b["verdict"] == "pass" and b["spread"] == pytest.approx([0.3, 0.7])


def test_evaluate_a_miss_records_how_far_off_and_what_dominates() -> None:
    doc = _chain_doc(
        jl_p50=[3.0, 3.2, 3.1], lim_p50=[2.0, 2.0, 2.0], jl_tps=[400.0, 500.0, 450.0], lim_tps=[1000.0] * 3
    )
    targets = {t["id"]: t for t in evaluate(doc)}
    a = targets["a.p50_vs_limit"]
    assert a["verdict"] == "miss"
    assert a["measured"] == pytest.approx(1.55) and a["off_by"] == pytest.approx(1.55 / 1.3)
    assert a["dominant"]  # the story of where the time went
    b = targets["b.tps_vs_limit.inflight"]
    assert b["verdict"] == "miss" and b["off_by"] == pytest.approx(0.6 / 0.45)
    assert "CPU per transition" in b["dominant"]


def test_evaluate_a_result_without_a_figure_is_not_applicable() -> None:
    doc = _chain_doc(jl_p50=[3.0], lim_p50=[2.0], jl_tps=[400.0], lim_tps=[1000.0])
    doc["scenarios"]["a"]["results"]["limit"] = {"error": "RuntimeError: the limit worker died"}
    a = {t["id"]: t for t in evaluate(doc)}["a.p50_vs_limit"]
    assert a["verdict"] == "n/a" and a["measured"] is None
    assert "the limit worker died" in a["detail"]
    assert format_spread(a) == ""


def test_result_files_are_numbered_per_day() -> None:
    names = [
        "2026-12-01.json",  # before numbering: run 1 of its day
        "2026-12-04-run1.json",
        "2026-12-04-run3.json",
        "2026-12-04-quick-run1.json",  # quick runs count apart
        "2026-12-04-run2.md",  # not a result document
        "listing-2026-12-04.json",
    ]
    assert day_runs(names, "2026-12-04") == [1, 3]
    assert next_run(names, "2026-12-04") == 4
    assert next_run(names, "2026-12-01") == 2
    assert next_run(names, "2026-12-05") == 1
    assert day_runs(names, "2026-12-04-quick") == [1]
