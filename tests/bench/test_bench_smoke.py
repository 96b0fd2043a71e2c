"""Smoke run of the benchmark harness: ``python -m benchmarks --quick`` runs every scenario at tiny
sizes; the result must have its full structure, and the baselines and jetloom must have completed
the same runs. No timing is asserted: on a shared 2-core machine the figures of a quick run mean
nothing."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAIN_SYSTEMS = ("limit", "peer", "jetloom")
MEASUREMENT_KEYS = {"runs", "completed", "transitions", "wall_s", "transitions_per_s", "cpu_s",
                    "cpu_us_per_transition"}  # fmt: skip


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-progress", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (path,) = out.glob("*.json")
    return json.loads(path.read_text()), out


UVLOOP = importlib.util.find_spec("uvloop") is not None  # the harness runs (u) only with it


def _same_runs(results: dict[str, Any], systems: tuple[str, ...]) -> None:
    for name in systems:
        m = results[name]
        assert MEASUREMENT_KEYS <= m.keys(), (name, sorted(m))
        assert m["completed"] == m["runs"] > 0, (name, m["completed"], m["runs"])
        assert m["transitions"] == 3 * m["completed"]
    assert len({results[n]["completed"] for n in systems}) == 1


def test_document_structure(quick_result: tuple[dict[str, Any], Path]) -> None:
    doc, out = quick_result
    assert doc["schema"] == 1
    for key in ("cores", "python", "nats_server", "nats_py", "llama_index_workflows", "git_commit"):
        assert key in doc["machine"]
    assert doc["options"]["quick"] is True
    assert set("abcdefgkrhm") <= set(doc["scenarios"])
    for key, sc in doc["scenarios"].items():
        assert sc["title"]
        if key == "u":  # the other event loop: skipped exactly when there is no uvloop to switch to
            assert ("skipped" in sc) is (not UVLOOP), sc
            assert ("results" in sc) is UVLOOP, sc
            if not UVLOOP:
                assert "uvloop is not installed" in sc["skipped"]
        else:
            assert "results" in sc, key
    md = next(out.glob("*.md")).read_text()
    assert "## Targets" in md and "## (d)" in md and "## (k)" in md and "## (r)" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    for name in ("targets", "a-latency", "b-throughput", "d-rebuild", "e-scaleout"):
        assert any(p.endswith(f"-{name}.png") for p in pngs), (name, pngs)


def test_chain_baselines_and_engine_completed_the_same_runs(
    quick_result: tuple[dict[str, Any], Path],
) -> None:
    sc = quick_result[0]["scenarios"]
    _same_runs(sc["a"]["results"], CHAIN_SYSTEMS)
    for mode in ("inflight", "saturated"):
        _same_runs(sc["b"]["results"][mode], (*CHAIN_SYSTEMS, "jetloom_lean"))
    _same_runs(sc["g"]["results"]["sequential"], ("limit", "jetloom"))
    for mode in ("inflight", "saturated"):
        _same_runs(sc["g"]["results"][mode], ("limit", "jetloom", "jetloom_lean"))
    for m in sc["a"]["results"].values():
        assert {"p50_ms", "p99_ms"} <= m["latency"].keys()
    assert sc["a"]["results"]["jetloom"]["breakdown"]["steps_ms"].keys() == {"parse", "count", "finish"}
    if UVLOOP:  # (else test_document_structure checked that (u) says why it was skipped)
        _same_runs(sc["u"]["results"]["inflight"], CHAIN_SYSTEMS)
    # (r): the chain on a 3-node cluster with R3 beside one node R1, the same runs, and the ratio
    _same_runs(sc["r"]["results"], ("r1", "r3"))
    assert sc["r"]["replicas"] == 3 and sc["r"]["r3_over_r1_transitions"] > 0


def test_other_scenarios_produced_figures(quick_result: tuple[dict[str, Any], Path]) -> None:
    sc = quick_result[0]["scenarios"]
    fan = sc["c"]["results"]
    assert {m["completed"] for m in fan.values()} == {fan["limit"]["runs"]}
    assert {m["transitions"] for m in fan.values()} == {fan["limit"]["runs"] * (1 + 2 * sc["c"]["n"])}
    rebuild = sc["d"]["results"]
    assert [int(k) for k in rebuild] == sc["d"]["sizes"]
    for size, m in rebuild.items():
        assert m["folded"] == int(size)
        assert m["rebuild_ms"] > 0 and m["raw_replay_ms"] > 0
        assert m["snapshot_rebuild_ms"] > 0 and m["snapshot_bytes"] > 0
    assert sc["d"]["snapshots"]["available"] is True
    scale, floor = sc["e"]["results"], sc["e"]["limit"]
    assert list(scale) == list(floor) == ["1", "2", "4"]
    assert {m["completed"] for m in [*scale.values(), *floor.values()]} == {scale["1"]["runs"]}
    plain = sc["e"]["no_affinity"]  # (jetloom without run affinity, in the same rounds)
    assert list(plain) == ["1", "2", "4"] and {m["completed"] for m in plain.values()} == {scale["1"]["runs"]}
    assert {"affinity", "no_affinity", "limit"} <= set(sc["e"]["ratios"])
    assert sc["f"]["same_counts"] is True
    recovery = sc["k"]["results"]
    assert recovery["trials"] == recovery["completed"] == 1
    (trial,) = sc["k"]["trials"]
    assert trial["rerun_pid"] != trial["killed_pid"]  # the step started again in the other worker
    assert 0 < recovery["rerun_s"]["p50"] <= recovery["rerun_s"]["max"]
    assert sc["f"]["results"]["jetloom"]["files"] > 0


def test_http_path_and_memory_produced_figures(quick_result: tuple[dict[str, Any], Path]) -> None:
    """(h): HTTP and NatsClient completed the same runs, CPU per run of each process, the driver's
    share of a core; (m): RSS of both processes at each checkpoint, and the peak."""
    doc, out = quick_result
    h = doc["scenarios"]["h"]["results"]
    for mode in ("sequential", "inflight"):
        _same_runs(h[mode], ("http", "client"))
        assert h[mode]["http"]["cpu_ms_per_run"]["control"] > 0
        assert 0 <= h[mode]["http"]["driver_busy"] < 1
        assert len(h[mode]["http"]["per_round"]) == len(h[mode]["client"]["per_round"]) >= 1
    m = doc["scenarios"]["m"]
    assert m["completed"] == m["runs"] == doc["options"]["memory_runs"]
    for proc in ("worker", "control"):
        r = m["results"][proc]
        assert [s["runs"] for s in r["samples"]] == sorted({max(1, round(m["runs"] * c)) for c in (0.01, 0.1, 0.5, 1.0)})
        assert all(s["rss_mb"] > 10 for s in r["samples"])
        assert r["peak_rss_mb"] >= r["samples"][-1]["rss_mb"] and r["growth"] > 0
    md = next(out.glob("*.md")).read_text()
    assert "## (h)" in md and "## (m)" in md and "Run 1 of 1 on" in md


def test_targets_have_verdicts(quick_result: tuple[dict[str, Any], Path]) -> None:
    targets = {t["id"]: t for t in quick_result[0]["targets"]}
    for tid in ("a.p50_vs_limit", "a.p50_vs_peer", "b.tps_vs_limit.inflight",
                "b.tps_vs_limit.saturated", "b.runs_vs_peer", "d.rebuild_vs_raw.100",
                "d.snapshot_100k_vs_1k", "e.cpu_4_vs_1", "h.p50_added_ms", "h.rps_vs_client",
                "m.worker_rss_growth", "m.control_rss_growth"):  # fmt: skip
        assert tid in targets, tid
    for t in targets.values():
        assert t["verdict"] in ("pass", "miss", "n/a")
        if t["verdict"] == "miss":
            assert t["off_by"] > 1 and t["dominant"], t
    assert targets["d.snapshot_100k_vs_1k"]["verdict"] == "n/a"


def test_both_nats_paths_completed_the_same_runs(quick_result: tuple[dict[str, Any], Path]) -> None:
    """(p): jetloom's chain with nats-py's fast path on and off, and the ratios between them."""
    doc, out = quick_result
    p = doc["scenarios"]["p"]
    for mode in ("sequential", "inflight"):
        _same_runs(p["results"][mode], ("fast path", "public API"))
    assert set(p["ratios"]) == {
        f"{mode}_{what}" for mode in ("sequential", "inflight") for what in ("transitions", "p50", "engine_cpu")
    }
    for key, v in p["ratios"].items():
        if v is None and key.endswith("_engine_cpu"):
            # a quick run's engine CPU can read 0 on one side (psutil's clock ticks are 10 ms):
            # no ratio then, and it must be for that reason
            mode = key.removesuffix("_engine_cpu")
            readings = [r["cpu_us_per_transition"].get("engine") for r in p["results"][mode].values()]
            assert any(not x for x in readings), (key, readings)
        else:
            assert v is not None and v > 0, (key, p["ratios"])
    assert "## (p)" in next(out.glob("*.md")).read_text()


def test_startup_scenario_timed_every_start(quick_result: tuple[dict[str, Any], Path]) -> None:
    """(s): every start of every round timed, what dominates each process named, three verdicts."""
    doc, out = quick_result
    s = doc["scenarios"]["s"]
    for m in s["results"].values():
        assert len(m["samples_ms"]) == s["rounds"] == 2
        assert 0 < m["min_ms"] <= m["median_ms"] <= m["max_ms"]
    for process in ("worker", "control"):
        assert s["dominant"][process]["imports_ms"] > 0 and s["dominant"][process]["top_packages_ms"]
    verdicts = {t["id"]: t["verdict"] for t in doc["targets"] if t["scenario"] == "s"}
    assert set(verdicts) == {"s.import_engine_ms", "s.worker_ready_s", "s.control_ready_s"}
    assert "## (s)" in next(out.glob("*.md")).read_text()
