"""The pure parts of the peers' comparison: a round's figures, the medians over rounds, the
verdicts, the results files' names and their Markdown. Nothing here needs a peer installed.

Units are in the key names: ``_ms`` milliseconds, ``_s`` seconds, ``per_s`` per second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..measure import latency_summary
from ..runner import next_run
from ..targets import median_spread, off_by

__all__ = [
    "TARGETS",
    "figures",
    "load",
    "markdown",
    "result_paths",
    "summarize",
    "verdicts",
]

#: (id, what, numerator engine, denominator engine, figure, op, bound), from issue 20 item 2.
TARGETS: tuple[tuple[str, str, str, str, str, str, float], ...] = (
    ("p50_sync_vs_restate", "p50 one run at a time, jetloom sync always ÷ Restate (equal durability)",
     "jetloom_sync_always", "restate", "sequential.p50_ms", "<=", 0.5),
    ("rps_sync_vs_restate", "runs/s in flight, jetloom sync always ÷ Restate (equal durability)",
     "jetloom_sync_always", "restate", "inflight.runs_per_s", ">=", 3.0),
    ("rps_default_vs_restate", "runs/s in flight, jetloom default ÷ Restate",
     "jetloom", "restate", "inflight.runs_per_s", ">=", 10.0),
)  # fmt: skip


def figures(raw: dict[str, Any], inflight: int) -> dict[str, Any]:
    """One measurement's figures from a driver's raw result (``procs.drive``).

    Args:
        raw: ``{"latencies_s": [...], "completed", "wall_s", "cpu_s": {group: s}}``, or
            ``{"error": ...}`` (returned as it is).
        inflight: runs in flight.

    Returns:
        ``{"inflight", "completed", "wall_s", "runs_per_s", "p50_ms", "p99_ms",
        "cpu_ms_per_run": {group: ms}, "cpu_ms_per_run_total"}``.
    """
    if "error" in raw:
        return dict(raw)
    lat = raw["latencies_s"]
    latency = latency_summary(lat)
    done = int(raw["completed"])
    wall = float(raw["wall_s"])
    per_run = {g: (s / done * 1e3 if done else None) for g, s in raw["cpu_s"].items()}
    return {
        "inflight": inflight,
        "runs": len(lat),
        "completed": done,
        "wall_s": wall,
        "runs_per_s": done / wall if wall > 0 else 0.0,
        "p50_ms": latency.get("p50_ms"),
        "p99_ms": latency.get("p99_ms"),
        "cpu_ms_per_run": per_run,
        "cpu_ms_per_run_total": sum(v for v in per_run.values() if v is not None) if done else None,
    }


def _get(fig: dict[str, Any], path: str) -> float | None:
    cur: Any = fig
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, int | float) else None


def _median_spread(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    median, lo, hi = median_spread(xs)
    return {"median": median, "min": lo, "max": hi, "n": len(xs)}


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """An engine's figures over its rounds: for each kind (``sequential``, ``inflight``) and figure,
    the median of the per-round figures with their min and max (``{"median", "min", "max", "n"}``);
    CPU per run per process group likewise. Failed rounds are left out and counted."""
    out: dict[str, Any] = {}
    for kind in ("sequential", "inflight"):
        good = [r[kind] for r in rounds if kind in r and "error" not in r[kind]]
        kind_out: dict[str, Any] = {
            name: _median_spread([v for f in good if (v := _get(f, name)) is not None])
            for name in ("runs_per_s", "p50_ms", "p99_ms", "cpu_ms_per_run_total")
        }
        groups = sorted({g for f in good for g in f["cpu_ms_per_run"]})
        kind_out["cpu_ms_per_run"] = {
            g: _median_spread([v for f in good if (v := f["cpu_ms_per_run"].get(g)) is not None]) for g in groups
        }
        kind_out["failed_rounds"] = len([r for r in rounds if kind in r and "error" in r[kind]])
        errors = [r[kind]["error"] for r in rounds if kind in r and "error" in r[kind]]
        if errors:
            kind_out["error"] = errors[-1]
        out[kind] = kind_out
    return out


def _cpu_text(summary: dict[str, Any], kind: str) -> str:
    groups = summary.get(kind, {}).get("cpu_ms_per_run", {})
    return ", ".join(f"{g} {v['median']:.2f}" for g, v in groups.items() if v["median"] is not None) + " ms"


def _dominant(doc: dict[str, Any], tid: str, num: str, den: str) -> str:
    """What dominates jetloom's side of a missed target: the disk's fsyncs against the CPU."""
    engines = doc["engines"]
    fs = doc.get("fsync") or {}
    cores = (doc.get("machine") or {}).get("cores") or 1
    if tid.startswith("p50"):
        per_run, each = fs.get("fsyncs_per_run"), fs.get("fsync_ms_p50")
        p50 = engines[num]["summary"]["sequential"]["p50_ms"]["median"]
        if per_run is not None and each is not None and p50:
            return (
                f"fsyncs: {per_run:.1f} per run × {each:.2f} ms per fsync on this disk = "
                f"{per_run * each:.1f} ms of jetloom's {p50:.1f} ms p50"
            )
        return ""
    s = engines[num]["summary"]["inflight"]
    rps, cpu = s["runs_per_s"]["median"], s["cpu_ms_per_run_total"]["median"]
    story = (
        f"CPU per run in flight — {engines[num]['title']}: {_cpu_text(engines[num]['summary'], 'inflight')}; "
        f"{engines[den]['title']}: {_cpu_text(engines[den]['summary'], 'inflight')}"
    )
    if rps and cpu:
        story += f". jetloom's processes kept {rps * cpu / 1e3 / cores:.0%} of the {cores} cores busy"
    inf = fs.get("inflight") if num.endswith("sync_always") else None
    if inf:
        busy = inf["fsync_wall_ms_per_run"] * inf["runs_per_s_traced"] / 1e3
        story += (
            f"; under strace nats-server spent {inf['fsync_wall_ms_per_run']:.2f} ms per run inside "
            f"{inf['fsyncs_per_run']:.1f} fsyncs (wall), {busy:.0%} of the wall time at the "
            f"{inf['runs_per_s_traced']:.0f} runs/s it then did"
        )
    return story


def verdicts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of ``TARGETS`` over ``doc["engines"][key]["rounds"]``: the median of the
    per-round ratios (rounds where both engines have the figure), their spread, pass/miss, off by
    how much (the ratio over the bound, or the inverse, so 1.2 is 20 % off) and, on a miss, what
    dominates (``_dominant``)."""
    out: list[dict[str, Any]] = []
    engines = doc.get("engines", {})
    for tid, what, num, den, path, op, bound in TARGETS:
        ratios: list[float] = []
        if num in engines and den in engines:
            for rn, rd in zip(engines[num]["rounds"], engines[den]["rounds"], strict=False):
                a, b = _get(rn, path), _get(rd, path)
                if a is not None and b:
                    ratios.append(a / b)
        ms = _median_spread(ratios)
        v: dict[str, Any] = {"id": tid, "what": what, "op": op, "target": bound, "measured": ms["median"],
                             "spread": [ms["min"], ms["max"]], "rounds": ms["n"], "off_by": None, "dominant": ""}  # fmt: skip
        if ms["median"] is None:
            v["verdict"] = "n/a"
            v["detail"] = f"no round with both {num} and {den} figures"
        else:
            v["off_by"] = off_by(ms["median"], op, bound)
            v["verdict"] = "pass" if v["off_by"] is None else "miss"
            if v["off_by"] is not None:
                v["dominant"] = _dominant(doc, tid, num, den)
            v["detail"] = ""
        out.append(v)
    return out


def result_paths(out_dir: Path, date: str) -> tuple[Path, Path, int]:
    """Where today's next results go: ``peers-<date>.json`` for the first run of the day, then
    ``peers-<date>-run2.json``, ...; returns ``(json_path, md_path, run_number)``."""
    run = next_run((p.name for p in out_dir.glob(f"peers-{date}*.json")), f"peers-{date}")
    stem = f"peers-{date}" if run == 1 else f"peers-{date}-run{run}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md", run


def load(path: Path) -> dict[str, Any]:
    """A results file, with its verdicts recomputed by this version of ``verdicts``.

    Raises:
        ValueError: the file is not a peers' results file.
    """
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("kind") != "peers" or "engines" not in doc:
        raise ValueError(f"{path} is not a peers' results file (kind {doc.get('kind')!r})")
    for e in doc["engines"].values():
        e["summary"] = summarize(e["rounds"])
    doc["verdicts"] = verdicts(doc)
    return doc


def _fmt(ms: dict[str, Any] | None, digits: int = 1) -> str:
    if not ms or ms.get("median") is None:
        return "—"
    m, lo, hi = ms["median"], ms["min"], ms["max"]
    return f"{m:,.{digits}f} ({lo:,.{digits}f}–{hi:,.{digits}f})"


def markdown(doc: dict[str, Any]) -> str:
    """The results as Markdown: the table with each engine's durability, the verdicts, where
    jetloom's time goes at sync always, and the versions."""
    m = doc.get("machine", {})
    inflight = doc["options"]["inflight"]
    lines = [
        f"# Peers: the 3-step chain on durable workflow engines, {doc['date']}",
        "",
        f"Run {doc['run_of_day']} of {doc['runs_of_day']} today. {m.get('cores')} cores ({m.get('cpu_model', '')}), "
        f"Python {m.get('python')}, jetloom commit `{str(m.get('git_commit', ''))[:7]}`; "
        f"{doc['options']['rounds']} rounds, the engines alternating within each round; "
        f"{doc.get('wall_s', 0):.0f} s in all. Figures: median of the rounds (min–max).",
        "",
        f"| engine | durability | p50 one at a time, ms | p99, ms | runs/s, {inflight} in flight | "
        "CPU per run, one at a time, ms | CPU per run in flight, ms (each process) |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in doc["engines"].values():
        s = e["summary"]
        seq, inf = s["sequential"], s["inflight"]
        err = "; ".join(f"{k} failed: {s[k]['error'][:200]}" for k in ("sequential", "inflight") if "error" in s[k])
        lines.append(
            f"| {e['title']} | {e['durability']} | {_fmt(seq['p50_ms'])} | {_fmt(seq['p99_ms'])} | "
            f"{_fmt(inf['runs_per_s'], 0)} | {_fmt(seq['cpu_ms_per_run_total'], 2)} | "
            f"{_fmt(inf['cpu_ms_per_run_total'], 2)}: {_cpu_text(s, 'inflight')}"
            + (f" — {err}" if err else "") + " |"
        )  # fmt: skip
    lines += ["", "Processes: " + "; ".join(
        f"{e['title']}: " + ", ".join(f"{g} = {d}" for g, d in e["processes"].items()) for e in doc["engines"].values()
    ) + ".", "", "## Verdicts", "", "| target | measured (median of per-round ratios, min–max) | bound | verdict | what dominates |",
        "|---|---|---|---|---|"]  # fmt: skip
    for v in doc["verdicts"]:
        if v["measured"] is None:
            measured, verdict = "—", f"n/a ({v['detail']})"
        else:
            measured = f"{v['measured']:.2f} ({v['spread'][0]:.2f}–{v['spread'][1]:.2f}, {v['rounds']} rounds)"
            verdict = "pass" if v["verdict"] == "pass" else f"miss ({v['off_by']:.1f}× off)"
        lines.append(f"| {v['what']} | {measured} | {v['op']} {v['target']:g} | {verdict} | {v['dominant']} |")
    fs = doc.get("fsync")
    if fs:
        lines += ["", "## jetloom at sync always: fsyncs", ""]
        if "error" in fs:
            lines.append(f"Not measured: {fs['error']}")
        else:
            lines.append(
                f"One 4 KiB write + fsync in the store's directory takes {fs['fsync_ms_p50']:.2f} ms p50 "
                f"({fs['fsync_ms_p90']:.2f} ms p90, {fs['probes']} probes). nats-server's fsync and "
                "fdatasync calls, counted by strace over every thread (these runs are apart from the figures: "
                "strace slows the server):"
            )
            lines += ["", "| runs in flight | runs traced | fsyncs per run | wall ms per run inside them | runs/s while traced |",
                      "|---|---|---|---|---|"]  # fmt: skip
            if "sequential" not in fs and "runs" in fs:  # (run 1 of 2026-12-04: one at a time, strace without -w)
                lines.append(f"| 1 | {fs['runs']} | {fs['fsyncs_per_run']:.1f} | — (system CPU inside them: "
                             f"{fs['syscall_s_per_run'] * 1e3:.2f}) | — |")  # fmt: skip
            for kind in ("sequential", "inflight"):
                k = fs.get(kind)
                if k:
                    lines.append(f"| {k['inflight']} | {k['runs']} | {k['fsyncs_per_run']:.1f} | "
                                 f"{k['fsync_wall_ms_per_run']:.2f} | {k['runs_per_s_traced']:.0f} |")  # fmt: skip
    lines += ["", "## Versions", ""]
    for e in doc["engines"].values():
        lines.append(f"- {e['title']}: " + ", ".join(f"{k} {v}" for k, v in e["versions"].items()))
    lines.append(f"- peers' venv: {', '.join(f'{k} {v}' for k, v in doc.get('peer_packages', {}).items())}")
    return "\n".join(lines) + "\n"
