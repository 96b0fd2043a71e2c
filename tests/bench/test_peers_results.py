"""The pure parts of ``make bench-peers`` (``benchmarks.peers.results``) and its CPU meter over
process trees: a round's figures, the medians over rounds, the verdicts, the results files' names,
reading a results file back. None of the peers needs to be installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.peers.procs import TreeMeter
from benchmarks.peers.results import figures, load, markdown, result_paths, summarize, verdicts


def raw(latencies_ms: list[float], wall_s: float, cpu_s: dict[str, float]) -> dict[str, Any]:
    return {"latencies_s": [x / 1e3 for x in latencies_ms], "completed": len(latencies_ms), "wall_s": wall_s,
            "cpu_s": cpu_s}  # fmt: skip


def engine(title: str, rounds: list[tuple[float, float]]) -> dict[str, Any]:
    """An engine's entry with one round per ``(p50_ms, runs_per_s)``: 100 runs one at a time all
    taking p50, and 100 runs in flight over ``100 / runs_per_s`` seconds."""
    out = []
    for p50, rps in rounds:
        out.append({
            "sequential": figures(raw([p50] * 100, 100 * p50 / 1e3, {"server": 0.1, "worker": 0.2}), 1),
            "inflight": figures(raw([50.0] * 100, 100 / rps, {"server": 0.3, "worker": 0.1, "driver": 0.1}), 100),
        })  # fmt: skip
    return {"title": title, "durability": f"{title}'s durability", "processes": {"server": "s"},
            "versions": {"v": "1"}, "rounds": out}  # fmt: skip


def doc_of(engines: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": "peers", "date": "2026-12-04", "run_of_day": 2, "runs_of_day": 2,
                           "options": {"rounds": 3, "inflight": 100}, "machine": {}, "engines": engines, **extra}  # fmt: skip
    for e in doc["engines"].values():
        e["summary"] = summarize(e["rounds"])
    doc["verdicts"] = verdicts(doc)
    return doc


def test_figures_of_one_measurement() -> None:
    f = figures(raw([1.0, 2.0, 3.0, 4.0], 2.0, {"server": 0.004, "driver": 0.002}), 1)
    assert f["completed"] == 4
    assert f["runs_per_s"] == pytest.approx(2.0)
    assert f["p50_ms"] == pytest.approx(2.5)
    assert f["cpu_ms_per_run"] == pytest.approx({"server": 1.0, "driver": 0.5})
    assert f["cpu_ms_per_run_total"] == pytest.approx(1.5)
    assert figures({"error": "RuntimeError: down"}, 1) == {"error": "RuntimeError: down"}


def test_summary_is_the_median_of_rounds_with_its_spread_and_counts_failures() -> None:
    e = engine("x", [(10.0, 100.0), (30.0, 300.0), (20.0, 200.0)])
    e["rounds"].append({"sequential": {"error": "RuntimeError: boom"}, "inflight": {"error": "RuntimeError: boom"}})
    s = summarize(e["rounds"])
    assert s["sequential"]["p50_ms"] == pytest.approx({"median": 20.0, "min": 10.0, "max": 30.0, "n": 3})
    assert s["inflight"]["runs_per_s"]["median"] == pytest.approx(200.0)
    assert s["inflight"]["cpu_ms_per_run"]["server"]["median"] == pytest.approx(3.0)
    assert s["sequential"]["failed_rounds"] == 1
    assert s["sequential"]["error"] == "RuntimeError: boom"


def test_verdicts_take_the_median_of_per_round_ratios() -> None:
    # per round, sync ÷ restate p50: 0.4, 0.6, 0.45 → median 0.45 (≤ 0.5 passes)
    # runs/s sync ÷ restate: 2, 4, 5 → 4 (≥ 3 passes); default ÷ restate: 5, 8, 6 → 6 (≥ 10 misses)
    doc = doc_of({
        "jetloom": engine("jetloom", [(2.0, 500.0), (2.0, 800.0), (2.0, 600.0)]),
        "jetloom_sync_always": engine("sync", [(4.0, 200.0), (6.0, 400.0), (4.5, 500.0)]),
        "restate": engine("Restate", [(10.0, 100.0), (10.0, 100.0), (10.0, 100.0)]),
    })  # fmt: skip
    by = {v["id"]: v for v in doc["verdicts"]}
    p50 = by["p50_sync_vs_restate"]
    assert (p50["verdict"], p50["rounds"]) == ("pass", 3)
    assert p50["measured"] == pytest.approx(0.45)
    assert p50["spread"] == pytest.approx([0.4, 0.6])
    assert by["rps_sync_vs_restate"]["measured"] == pytest.approx(4.0)
    assert by["rps_sync_vs_restate"]["verdict"] == "pass"
    miss = by["rps_default_vs_restate"]
    assert (miss["verdict"], miss["measured"]) == ("miss", pytest.approx(6.0))
    assert miss["off_by"] == pytest.approx(10 / 6)
    assert "Restate" in miss["dominant"] and "server 3.00" in miss["dominant"]


def test_a_p50_miss_is_explained_by_fsyncs_and_a_missing_engine_gives_n_a() -> None:
    fsync = {"fsyncs_per_run": 6.0, "fsync_ms_p50": 0.5, "fsync_ms_p90": 2.0, "probes": 200,
             "inflight": {"inflight": 100, "runs": 550, "fsyncs_per_run": 2.5, "fsync_wall_ms_per_run": 4.0,
                          "runs_per_s_traced": 150.0}}  # fmt: skip
    doc = doc_of({
        "jetloom_sync_always": engine("sync", [(8.0, 200.0)]),
        "restate": engine("Restate", [(10.0, 100.0)]),
    }, fsync=fsync)  # fmt: skip
    by = {v["id"]: v for v in doc["verdicts"]}
    assert by["p50_sync_vs_restate"]["verdict"] == "miss"
    assert by["p50_sync_vs_restate"]["off_by"] == pytest.approx(1.6)
    assert "6.0 per run × 0.50 ms" in by["p50_sync_vs_restate"]["dominant"]
    # in flight, 200 ÷ 100 misses ≥ 3: 4 ms per run inside fsyncs at the traced 150 runs/s is 60 %
    # of the wall time
    assert by["rps_sync_vs_restate"]["verdict"] == "miss"
    assert "4.00 ms per run inside 2.5 fsyncs" in by["rps_sync_vs_restate"]["dominant"]
    assert "60% of the wall time at the 150 runs/s" in by["rps_sync_vs_restate"]["dominant"]
    assert by["rps_default_vs_restate"]["verdict"] == "n/a"
    assert by["rps_default_vs_restate"]["measured"] is None
    assert "| 100 | 550 | 2.5 | 4.00 | 150 |" in markdown(doc)


def test_rounds_where_one_engine_failed_are_left_out_of_the_ratio() -> None:
    restate = engine("Restate", [(10.0, 100.0), (10.0, 100.0)])
    restate["rounds"][0] = {"sequential": {"error": "RuntimeError: x"}, "inflight": {"error": "RuntimeError: x"}}
    doc = doc_of({"jetloom_sync_always": engine("sync", [(1.0, 100.0), (3.0, 100.0)]), "restate": restate})
    p50 = {v["id"]: v for v in doc["verdicts"]}["p50_sync_vs_restate"]
    assert (p50["rounds"], p50["measured"]) == (1, pytest.approx(0.3))


def test_result_paths_number_the_runs_of_a_day(tmp_path: Path) -> None:
    assert result_paths(tmp_path, "2026-12-04") == (tmp_path / "peers-2026-12-04.json", tmp_path / "peers-2026-12-04.md", 1)
    (tmp_path / "peers-2026-12-04.json").write_text("{}")
    (tmp_path / "peers-2026-12-03-run5.json").write_text("{}")
    (tmp_path / "2026-12-04.json").write_text("{}")  # the main harness's file of the day
    assert result_paths(tmp_path, "2026-12-04")[2] == 2
    (tmp_path / "peers-2026-12-04-run3.json").write_text("{}")
    jp, mp, n = result_paths(tmp_path, "2026-12-04")
    assert (jp.name, mp.name, n) == ("peers-2026-12-04-run4.json", "peers-2026-12-04-run4.md", 4)


def test_load_recomputes_verdicts_and_refuses_other_files(tmp_path: Path) -> None:
    doc = doc_of({
        "jetloom_sync_always": engine("sync", [(2.0, 400.0)]),
        "restate": engine("Restate", [(10.0, 100.0)]),
    })  # fmt: skip
    doc["verdicts"] = []  # (as written by an older harness)
    path = tmp_path / "peers-2026-12-04-run2.json"
    path.write_text(json.dumps(doc))
    back = load(path)
    assert [v["verdict"] for v in back["verdicts"]] == ["pass", "pass", "n/a"]
    md = markdown(back)
    assert "Run 2 of 2 today" in md
    assert "Restate's durability" in md and "sync's durability" in md
    other = tmp_path / "2026-12-04.json"
    other.write_text(json.dumps({"targets": []}))
    with pytest.raises(ValueError, match="not a peers' results file"):
        load(other)


def test_tree_meter_counts_a_child_that_has_exited() -> None:
    """CPU spent by a grandchild that its parent has already reaped still counts (Postgres's
    backends come and go like this)."""
    burn = "import time; t = time.process_time(); exec('while time.process_time() - t < 0.3: pass')"
    parent = (
        "import subprocess, sys; sys.stdin.readline(); "
        f"subprocess.run([sys.executable, '-c', {burn!r}], check=True); print('done', flush=True); sys.stdin.readline()"
    )
    p = subprocess.Popen([sys.executable, "-c", parent], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdin is not None and p.stdout is not None
    try:
        meter = TreeMeter({"tree": [p.pid]})
        meter.start()
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "done"
        cpu = meter.stop()["tree"]
        assert cpu >= 0.25
    finally:
        p.stdin.close()
        p.wait(30)
