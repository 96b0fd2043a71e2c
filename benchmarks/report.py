"""Rendering a result document: a Markdown report and PNG plots (matplotlib, Agg backend).

``python -m benchmarks report FILE.json`` re-renders both from a saved result.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .scenarios.startup import markdown as startup_markdown  # noqa: E402
from .targets import format_spread  # noqa: E402

__all__ = ["render_markdown", "render_plots"]

SYSTEMS = ("limit", "peer", "jetloom")
#: Rows of the chain tables: the systems, and jetloom with the lean driver of (b)/(g).
CHAIN_ROWS = (*SYSTEMS, "jetloom_lean")
COLORS = {
    "limit": "#4c72b0",
    "peer": "#dd8452",
    "jetloom": "#55a868",
    "jetloom_lean": "#8fd19e",
    "raw": "#4c72b0",
}
GROUPS = ("engine", "server", "driver")


# ---- Markdown -------------------------------------------------------------------------------------


TRIED = Path(__file__).with_name("tried.md")  # what was tried on the hot path, appended to reports


def _f(x: Any, fmt: str = ",.2f") -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and (x != x):  # NaN
        return "—"
    return format(x, fmt)


def _table(head: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _ok(results: dict[str, Any]) -> dict[str, Any]:
    """The measurements of ``results`` that did not fail."""
    return {k: v for k, v in results.items() if isinstance(v, dict) and "error" not in v}


def _cpu_cells(m: dict[str, Any]) -> list[str]:
    per = m.get("cpu_us_per_transition") or {}
    return [_f(per.get(g), ",.0f") for g in GROUPS]


def _chain_rows(results: dict[str, Any], label: str = "") -> list[list[str]]:
    rows = []
    for name in CHAIN_ROWS:
        m = results.get(name)
        if not m:
            continue
        if "error" in m:
            rows.append([label, name, f"failed: {m['error'][:300]}", *["—"] * 7])
            continue
        lat = m.get("latency", {})
        rows.append(
            [label, name, f"{m['completed']}/{m['runs']}", _f(lat.get("p50_ms")), _f(lat.get("p99_ms")),
             _f(m["runs_per_s"], ",.0f"), _f(m["transitions_per_s"], ",.0f"), *_cpu_cells(m)]
        )  # fmt: skip
    return rows


CHAIN_HEAD = ["", "system", "completed", "p50 ms", "p99 ms", "runs/s", "transitions/s",
              "engine CPU µs/tr", "server CPU µs/tr", "driver CPU µs/tr"]  # fmt: skip


def _verdict(t: dict[str, Any]) -> str:
    if t["verdict"] == "pass":
        return "✅ pass"
    if t["verdict"] == "miss":
        return f"❌ miss ({t['off_by']:,.2f}× off)"
    return "n/a"


def render_markdown(doc: dict[str, Any], pngs: list[Path] | None = None) -> str:
    m = doc["machine"]
    sc = doc["scenarios"]
    o = doc["options"]
    out = [f"# jetloom benchmarks — {doc['started_at']}\n"]
    out.append(f"> {doc['note']}\n")
    out.append(
        f"Machine: {m['cores']} cores ({m['cpu_model']}), Python {m['python']}, {m['nats_server']}, "
        f"nats-py {m['nats_py']}, llama-index-workflows {m['llama_index_workflows']}, "
        f"uvloop {m['uvloop'] or 'not installed'} ({'on' if doc.get('uvloop') else 'off'} in the main "
        f"figures). Commit `{m['git_commit'][:12]}` on `{m['git_branch']}`"
        f"{' (uncommitted changes)' if m['git_dirty'] else ''}. "
        f"{'Quick (smoke) sizes. ' if o['quick'] else ''}Took {doc['duration_s']:.0f} s."
        + (f" Steal time (CPU the hypervisor gave to other guests): {m['steal']:.0%} of the machine's "
           "CPU time during the run." if m.get("steal") is not None else "")
        + "\n"
    )
    run = doc.get("run_of_day")
    if run:
        out.append(
            f"Run {run['run']} of {run['of']} on {run['date']} (the runs of that day in the results "
            "directory when this file was written).\n"
        )
    out.append("## Targets\n")
    out.append(
        "A target between systems measured in alternating rounds is decided by the median of the "
        "per-round ratios; the spread is their minimum–maximum (`benchmarks/targets.py`).\n\n"
    )
    out.append(
        _table(
            ["target", "measured ratio (median)", "spread of per-round ratios", "bound", "verdict",
             "figures", "what dominates the cost"],
            [
                [
                    t["what"],
                    _f(t["measured"], ",.3f"),
                    format_spread(t) or "—",
                    f"{t['op']} {t['target']:g}",
                    _verdict(t),
                    t["detail"],
                    t["dominant"] or "",
                ]
                for t in doc["targets"]
            ],
        )  # fmt: skip
    )
    out.append(
        "\nCPU µs/tr = CPU microseconds (user + system) per step transition: *engine* = the step "
        "worker processes (for the peer, its whole in-process run), *server* = nats-server, "
        "*driver* = the process starting runs and waiting for their ends.\n"
    )
    if "a" in sc and "results" in sc["a"]:
        out.append(f"\n## (a) {sc['a']['title']}\n")
        out.append(_table(CHAIN_HEAD, _chain_rows(sc["a"]["results"], "sequential")))
    if "b" in sc and "results" in sc["b"]:
        b = sc["b"]
        out.append(f"\n## (b) {b['title']}\n")
        rows = _chain_rows(b["results"]["inflight"], f"{b['inflight']} in flight")
        rows += _chain_rows(b["results"]["saturated"], f"{b['saturation']} in flight")
        if "retained" in b["results"]:
            rows += _chain_rows(
                b["results"]["retained"], f"{b['inflight']} in flight, {b['retained_runs']:,} runs kept"
            )
        out.append(_table(CHAIN_HEAD, rows))
    if "c" in sc and "results" in sc["c"]:
        c = sc["c"]
        out.append(f"\n## (c) {c['title']} (n = {c['n']:,})\n")
        out.append(_table(
            ["system", "completed", "wall s (median)", "transitions/s",
             "engine CPU µs/tr", "server CPU µs/tr", "driver CPU µs/tr"],
            [[k, f"{v['completed']}/{v['runs']}", _f(v["wall_s"], ",.3f"),
              _f(v["transitions_per_s"], ",.0f"), *_cpu_cells(v)]
             for k, v in _ok(c["results"]).items()],
        ))  # fmt: skip
    if "d" in sc and "results" in sc["d"]:
        d = sc["d"]
        out.append(f"\n## (d) {d['title']}\n")
        out.append(_table(
            ["records", "rebuild ms", "read ms", "decode ms", "fold ms", "raw replay ms", "ratio",
             "from snapshot ms", "snapshot kB"],
            [[f"{int(k):,}", _f(v["rebuild_ms"]), _f(v["rebuild_phases_ms"]["read_ms"]),
              _f(v["rebuild_phases_ms"]["decode_ms"]), _f(v["rebuild_phases_ms"]["fold_ms"]),
              _f(v["raw_replay_ms"]), _f(v["ratio"], ".2f"), _f(v.get("snapshot_rebuild_ms")),
              _f(v["snapshot_bytes"] / 1024, ",.0f") if "snapshot_bytes" in v else "—"]
             for k, v in d["results"].items()],
        ))  # fmt: skip
        snap = d["snapshots"]
        if snap.get("available"):
            out.append(
                f"\nFrom snapshot = KV get + decode + read and fold the last {snap['tail']} records.\n"
            )
        else:
            out.append(f"\nSnapshots: not available — {snap.get('reason')}.\n")
    if "e" in sc and "results" in sc["e"]:
        e = sc["e"]
        out.append(f"\n## (e) {e['title']} ({e['inflight']} runs in flight)\n")
        rows = [[k, name, f"{v['completed']}/{v['runs']}", _f(v["runs_per_s"], ",.0f"),
                 _f(v["transitions_per_s"], ",.0f"), *_cpu_cells(v)]
                for key, name in (("results", "jetloom, run affinity"), ("no_affinity", "jetloom, no affinity"),
                                  ("limit", "limit"))
                for k, v in _ok(e.get(key, {})).items()]  # fmt: skip
        out.append(_table(
            ["processes", "system", "completed", "runs/s", "transitions/s",
             "engine CPU µs/tr", "server CPU µs/tr", "driver CPU µs/tr"], rows,
        ))  # fmt: skip
        ratios = _scale_ratios(e)
        if ratios:
            out.append(f"\n{ratios}")
        else:
            spread = _spread(e)
            if spread:
                out.append(f"\n{spread}\n")
        if e.get("note"):
            out.append(f"\n{e['note']}.\n")
    if "f" in sc and "results" in sc["f"]:
        f = sc["f"]
        p, j = f["results"]["plain"], f["results"]["jetloom"]
        out.append(f"\n## (f) {f['title']}\n")
        out.append(f"Indexed `{f['root']}`; same counts in both: {f['same_counts']}.\n\n")
        out.append(_table(
            ["", "files", "parsed", "docstrings", "wall s", "engine CPU s", "server CPU s", "driver CPU s"],
            [["plain loop (1 process)", p["files"], p["parsed"], p["docstrings"], _f(p["wall_s"]),
              _f(p["cpu_s"]["engine"]), "—", "—"],
             [f"jetloom ({j['workers']} worker processes)", j["files"], j["parsed"], j["docstrings"],
              _f(j["wall_s"]), _f(j["cpu_s"]["engine"]), _f(j["cpu_s"]["server"]),
              _f(j["cpu_s"]["driver"])]],
        ))  # fmt: skip
        out.append(f"\nWall time distributed / plain: {_f(f['wall_ratio'])}×.\n")
    if "g" in sc and "results" in sc["g"]:
        g = sc["g"]
        out.append(f"\n## (g) {g['title']}\n")
        rows = _chain_rows(g["results"]["sequential"], "sequential")
        rows += _chain_rows(g["results"]["inflight"], "in flight")
        rows += _chain_rows(g["results"]["saturated"], "saturated")
        out.append(_table(CHAIN_HEAD, rows))
        ratio = _ratio(g["results"]["inflight"], "transitions_per_s")
        out.append(
            f"\njetloom / limit transitions/s in flight with sync always: {_f(ratio, '.3f')}.\n"
        )
    if "r" in sc and "results" in sc["r"]:
        r = sc["r"]
        out.append(f"\n## (r) {r['title']}\n")
        rows = []
        for key, what in (("r1", "1 node, R1"), ("r3", "3 nodes, R3")):
            rows += _chain_rows({"jetloom": r["results"][key]}, what)
        out.append(_table(CHAIN_HEAD, rows))
        out.append(
            f"\nTransitions/s on 3 nodes R3 / 1 node R1, same run: {_f(r.get('r3_over_r1_transitions'), '.3f')} "
            "(the three nodes share this machine's cores).\n"
        )
    if "u" in sc and "error" not in sc["u"]:
        u = sc["u"]
        out.append(f"\n## (u) {u['title']}\n")
        if "skipped" in u:
            out.append(f"Skipped: {u['skipped']}.\n")
        else:
            loop = "uvloop" if u["uvloop"] else "asyncio"
            main = "uvloop" if doc.get("uvloop") else "asyncio"
            rows = []
            for mode, src_key, src_mode in (
                ("sequential", "a", None),
                ("in flight", "b", "inflight"),
            ):
                this = _ok(u["results"]["sequential" if src_mode is None else "inflight"])
                ref = sc.get(src_key, {}).get("results", {})
                ref = ref.get(src_mode, {}) if src_mode else ref
                ref = _ok(ref)
                for name in SYSTEMS:
                    if name in this:
                        for lp, m in ((main, ref.get(name)), (loop, this[name])):
                            if m:
                                rows.append([mode, name, lp, _f(m["latency"]["p50_ms"]),
                                             _f(m["transitions_per_s"], ",.0f"), *_cpu_cells(m)])  # fmt: skip
            out.append(_table(
                ["", "system", "loop", "p50 ms", "transitions/s", "engine CPU µs/tr",
                 "server CPU µs/tr", "driver CPU µs/tr"], rows))  # fmt: skip
    if "p" in sc and "results" in sc["p"]:
        p = sc["p"]
        out.append(f"\n## (p) {p['title']}\n")
        rows = []
        for mode, what in (("sequential", "one at a time"), ("inflight", "in flight")):
            for path, m in p["results"][mode].items():
                if "error" in m:
                    rows.append([what, path, f"failed: {m['error'][:300]}", *["—"] * 6])
                    continue
                rows.append([what, path, f"{m['completed']}/{m['runs']}", _f(m["latency"]["p50_ms"]),
                             _f(m["latency"]["p99_ms"]), _f(m["transitions_per_s"], ",.0f"), *_cpu_cells(m)])  # fmt: skip
        out.append(_table(["", "path", "completed", "p50 ms", "p99 ms", "transitions/s", "engine CPU µs/tr",
                           "server CPU µs/tr", "driver CPU µs/tr"], rows))  # fmt: skip
        q = p["ratios"]
        out.append(
            f"\nFast path over public API, same run ({p['rounds']} alternating rounds): transitions/s "
            f"{_f(q['sequential_transitions'], '.2f')}x one at a time, {_f(q['inflight_transitions'], '.2f')}x "
            f"in flight; the public API's p50 {_f(q['sequential_p50'], '.2f')}x / {_f(q['inflight_p50'], '.2f')}x "
            f"and engine CPU per transition {_f(q['sequential_engine_cpu'], '.2f')}x / "
            f"{_f(q['inflight_engine_cpu'], '.2f')}x the fast path's.\n"
        )
    if "k" in sc and "results" in sc["k"]:
        r = sc["k"]
        out.append(f"\n## (k) {r['title']}\n")
        out.append(
            f"Workers' defaults: ack_wait {_f(r['ack_wait_s'], 'g')} s, progress heartbeat "
            f"{_f(r['progress_heartbeat_s'], 'g')} s. Seconds from the SIGKILL to the step's start in "
            "the other worker process:\n"
        )
        rr = r["results"]
        out.append(_table(
            ["trials", "completed", "p50 s", "max s", "min s"],
            [[rr["trials"], rr["completed"], _f(rr["rerun_s"]["p50"]), _f(rr["rerun_s"]["max"]),
              _f(rr["rerun_s"]["min"])]],
        ))  # fmt: skip
    if "s" in sc and "results" in sc["s"]:
        out.append(startup_markdown(sc["s"]))
    if "h" in sc and "results" in sc["h"]:
        out.append(_http_section(sc["h"]))
    if "m" in sc and "results" in sc["m"]:
        out.append(_memory_section(sc["m"]))
    failed = [(k, v) for k, v in sc.items() if "error" in v]
    failed += [(f"{k}/{n}", m) for k, v in sc.items() if k in ("c", "e")
               for n, m in v.get("results", {}).items() if "error" in m]  # fmt: skip
    if failed:
        out.append("\n## Failures\n")
        out += [f"- ({k}) {v['error']}\n" for k, v in failed]
    if TRIED.exists():
        out.append("\n" + TRIED.read_text())
    if pngs:
        out.append("\n## Plots\n")
        out += [f"![{p.stem}]({p.name})\n" for p in pngs]
    return "\n".join(out)


def _ratio(results: dict[str, Any], key: str) -> float | None:
    try:
        return results["jetloom"][key] / results["limit"][key]
    except (KeyError, ZeroDivisionError):
        return None


def _http_section(h: dict[str, Any]) -> str:
    """(h): HTTP against NatsClient, one run at a time and in flight, with CPU per run by process."""
    groups = ("engine", "server", "control", "driver")
    rows = []
    for mode, what in (("sequential", "one at a time"), ("inflight", f"{h['inflight']} in flight")):
        for path, label in (("http", "HTTP ?wait=true"), ("client", "NatsClient")):
            m = h["results"][mode].get(path) or {}
            if "error" in m or not m:
                rows.append([what, label, f"failed: {m.get('error', '')[:300]}", *["—"] * 9])
                continue
            per = m.get("cpu_ms_per_run") or {}
            rows.append([what, label, f"{m['completed']}/{m['runs']}", _f(m["latency"]["p50_ms"]),
                         _f(m["latency"]["p99_ms"]), _f(m["runs_per_s"], ",.0f"),
                         *[_f(per.get(g), ".3f") for g in groups], _f(m.get("driver_busy"), ".0%")])  # fmt: skip
    table = _table(["", "path", "completed", "p50 ms", "p99 ms", "runs/s", "engine CPU ms/run",
                    "server CPU ms/run", "control plane CPU ms/run", "driver CPU ms/run",
                    "driver busy (of one core)"], rows)  # fmt: skip
    return (
        f"\n## (h) {h['title']}\n\nControl plane: {h['control_plane']}; driver: {h['driver']}. "
        "Figures pooled over the alternating rounds.\n\n" + table
    )


def _memory_section(m: dict[str, Any]) -> str:
    """(m): RSS of the worker and the control plane at each checkpoint, peak and growth."""
    r = m["results"]
    marks = [s["runs"] for s in r["worker"]["samples"]]
    rows = [
        [name, *[_f(s["rss_mb"], ".1f") for s in r[name]["samples"]], _f(r[name]["peak_rss_mb"], ".1f"),
         _f(r[name]["growth"], ".3f")]
        for name in ("worker", "control")
    ]  # fmt: skip
    table = _table(
        ["process", *[f"RSS MB at {k:,} runs" for k in marks], "peak RSS MB", f"growth (end ÷ {m['growth_from_runs']:,})"],
        rows,
    )
    return (
        f"\n## (m) {m['title']}\n\n{m['completed']:,} of {m['runs']:,} runs completed, {m['inflight']} in flight, "
        f"{m['wall_s']:.0f} s.\n\n" + table
    )


# ---- plots ----------------------------------------------------------------------------------------


def _save(fig: Any, out: Path, stem: str, name: str, paths: list[Path]) -> None:
    path = out / f"{stem}-{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)


def _bar_labels(ax: Any, bars: Any, fmt: str) -> None:
    ax.bar_label(bars, labels=[format(b.get_height(), fmt) for b in bars], fontsize=8, padding=2)


def _plot_targets(doc: dict[str, Any], out: Path, stem: str, paths: list[Path]) -> None:
    ts = [t for t in doc["targets"] if t["verdict"] != "n/a"]
    if not ts:
        return
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(ts) + 1.5))
    # How far from the bound, as "times the bound" on the side that matters: <1 is inside.
    xs = [(t["measured"] / t["target"]) if t["op"] != ">=" else (t["target"] / t["measured"] if t["measured"] else 1e6) for t in ts]  # fmt: skip
    colors = ["#55a868" if t["verdict"] == "pass" else "#c44e52" for t in ts]
    ax.barh(range(len(ts)), xs, color=colors)
    ax.set_yticks(range(len(ts)), [t["what"] for t in ts], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(
        "distance from the target (1 = at the bound; right of it = missed by that factor)"
    )
    for i, (x, t) in enumerate(zip(xs, ts, strict=True)):
        ax.text(x, i, f" {t['measured']:.3g} ({t['op']} {t['target']:g})", va="center", fontsize=8)
    ax.set_title("Targets (ratios from the same run); green = met, red = missed")
    _save(fig, out, stem, "targets", paths)


def _plot_latency(doc: dict[str, Any], out: Path, stem: str, paths: list[Path]) -> None:
    a = _ok(doc["scenarios"].get("a", {}).get("results", {}))
    if not a:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [s for s in SYSTEMS if s in a]
    w = 0.38
    for j, q in enumerate(("p50_ms", "p99_ms")):
        bars = ax1.bar([i + (j - 0.5) * w for i in range(len(names))],
                       [a[n]["latency"][q] for n in names], w, label=q[:3],
                       color=[COLORS[n] for n in names], alpha=1.0 if j == 0 else 0.55)  # fmt: skip
        _bar_labels(ax1, bars, ".2f")
    ax1.set_xticks(range(len(names)), names)
    ax1.set_yscale("log")
    ax1.set_ylabel("ms (log)")
    ax1.set_title("(a) end-to-end latency, one run at a time\n(solid p50, light p99)")
    for n in names:
        cdf = a[n].get("cdf_ms") or []
        ax2.plot(cdf, [i / (len(cdf) - 1) for i in range(len(cdf))], label=n, color=COLORS[n])
    ax2.set_xscale("log")
    ax2.set_xlabel("latency ms (log)")
    ax2.set_ylabel("fraction of runs")
    ax2.set_title("(a) latency CDF")
    ax2.legend()
    ax2.grid(alpha=0.3)
    _save(fig, out, stem, "a-latency", paths)


def _plot_throughput(doc: dict[str, Any], out: Path, stem: str, paths: list[Path]) -> None:
    sc = doc["scenarios"]
    groups: list[tuple[str, dict[str, Any]]] = []
    if "results" in sc.get("b", {}):
        groups.append((f"(b) {sc['b']['inflight']} in flight", sc["b"]["results"]["inflight"]))
        groups.append((f"(b) {sc['b']['saturation']} in flight", sc["b"]["results"]["saturated"]))
    if "results" in sc.get("g", {}):
        groups.append(("(g) sync always,\nin flight", sc["g"]["results"]["inflight"]))
        groups.append(("(g) sync always,\nsaturated", sc["g"]["results"]["saturated"]))
    if "results" in sc.get("u", {}):
        loop = "uvloop" if sc["u"]["uvloop"] else "asyncio"
        groups.append((f"(u) {loop},\nin flight", sc["u"]["results"]["inflight"]))
    if not groups:
        return
    fig, ax = plt.subplots(figsize=(11, 4.5))
    w = 0.2
    groups = [(g, _ok(r)) for g, r in groups]
    for j, name in enumerate(CHAIN_ROWS):
        xs = [i + (j - 1.5) * w for i, (_, r) in enumerate(groups) if name in r]
        ys = [r[name]["transitions_per_s"] for _, r in groups if name in r]
        if xs:
            _bar_labels(ax, ax.bar(xs, ys, w, label=name, color=COLORS[name]), ",.0f")
    ax.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("step transitions/s (log)")
    ax.set_title("3-step chain throughput")
    ax.legend()
    _save(fig, out, stem, "b-throughput", paths)


def _plot_cpu(doc: dict[str, Any], out: Path, stem: str, paths: list[Path]) -> None:
    sc = doc["scenarios"]
    cases: list[tuple[str, dict[str, Any]]] = []
    if "results" in sc.get("a", {}):
        cases.append(("(a) sequential", sc["a"]["results"]))
    if "results" in sc.get("b", {}):
        cases.append((f"(b) {sc['b']['inflight']} in flight", sc["b"]["results"]["inflight"]))
    if "results" in sc.get("c", {}):
        cases.append((f"(c) fan {sc['c']['n']}", sc["c"]["results"]))
    if not cases:
        return
    fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 4), squeeze=False)
    for ax, (title, res) in zip(axes[0], cases, strict=True):
        res = _ok(res)
        names = [s for s in SYSTEMS if s in res]
        bottom = [0.0] * len(names)
        for g, alpha in zip(GROUPS, (1.0, 0.6, 0.3), strict=True):
            ys = [(res[n]["cpu_us_per_transition"].get(g) or 0.0) for n in names]
            ax.bar(names, ys, bottom=bottom, color=[COLORS[n] for n in names], alpha=alpha,
                   edgecolor="black", lw=0.3, label=g)  # fmt: skip
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
        for i, total in enumerate(bottom):
            ax.text(i, total, f"{total:,.0f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("CPU µs per transition")
    axes[0][0].legend(title="stacked: engine / server / driver", fontsize=7, title_fontsize=7)
    _save(fig, out, stem, "cpu-per-transition", paths)


def _plot_rebuild(doc: dict[str, Any], out: Path, stem: str, paths: list[Path]) -> None:
    d = doc["scenarios"].get("d", {}).get("results")
    if not d:
        return
    sizes = [int(k) for k in d]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(sizes, [v["rebuild_ms"] for v in d.values()], "o-", color=COLORS["jetloom"],
            label="jetloom rebuild (read + decode + fold)")  # fmt: skip
    ax.plot(sizes, [v["raw_replay_ms"] for v in d.values()], "s-", color=COLORS["raw"],
            label="raw ordered-consumer replay")  # fmt: skip
    ax.plot(sizes, [1.5 * v["raw_replay_ms"] for v in d.values()], ":", color="gray",
            label="target: 1.5 × raw replay")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("records in the run (log)")
    ax.set_ylabel("ms (log)")
    snaps = [v.get("snapshot_rebuild_ms") for v in d.values()]
    if all(x is not None for x in snaps):
        ax.plot(sizes, snaps, "^-", color="tab:green", label="jetloom from snapshot + tail")
    ax.set_title("(d) rebuilding a run from its log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    _save(fig, out, stem, "d-rebuild", paths)


def _scale_ratios(e: dict[str, Any]) -> str:
    """The table of (e)'s per-round ratios ``n ÷ 1`` of CPU per transition: median and spread
    over the rounds, for each system (empty when the results have none)."""
    ratios = e.get("ratios") or {}
    names = {"affinity": "jetloom, run affinity", "no_affinity": "jetloom, no affinity", "limit": "limit",
             "affinity_own": "jetloom's own part, affinity (÷ limit)",
             "no_affinity_own": "jetloom's own part, no affinity (÷ limit)"}  # fmt: skip
    keys = sorted({k for figures in ratios.values() for k in figures})
    if not keys:
        return ""

    def cell(summary: dict[str, Any] | None) -> str:
        if not summary or summary.get("median") is None:
            return "—"
        return f"{summary['median']:.2f} ({summary['min']:.2f}–{summary['max']:.2f})"

    rows = [[names.get(system, system), *(cell(figures.get(k)) for k in keys)] for system, figures in ratios.items()]
    head = [k.replace("_vs_", " ÷ ").replace("_", " ") for k in keys]
    return (
        f"CPU per transition, n processes ÷ 1, per round: median (min–max) of {e.get('rounds', 1)} "
        "alternating rounds.\n\n" + _table(["system", *head], rows)
    )


def _spread(e: dict[str, Any]) -> str:
    """The sentence comparing engine CPU per transition at the most processes with one, for
    jetloom and for the limit (empty when a figure is missing, or zero: a run too short for the
    CPU clock's 10 ms ticks)."""
    j, lim = _ok(e.get("results", {})), _ok(e.get("limit", {}))
    ks = [k for k in j if k in lim and k != "1"]
    if "1" not in j or "1" not in lim or not ks:
        return ""
    k = ks[-1]
    if not all(m[n]["cpu_us_per_transition"]["engine"] for m in (j, lim) for n in ("1", k)):
        return ""

    def ratio(m: dict[str, Any]) -> float:
        return m[k]["cpu_us_per_transition"]["engine"] / m["1"]["cpu_us_per_transition"]["engine"]

    return (
        f"Engine CPU per transition, {k} processes ÷ 1: jetloom {ratio(j):.2f}×, limit "
        f"{ratio(lim):.2f}×; jetloom's own part (its ratio ÷ the limit's) {ratio(j) / ratio(lim):.2f}×."
    )


def _plot_scaleout(doc: dict[str, Any], out: Path, stem: str, paths: list[Path]) -> None:
    e = _ok(doc["scenarios"].get("e", {}).get("results", {}))
    if not e:
        return
    ks = list(e)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bars = ax.bar(ks, [e[k]["transitions_per_s"] for k in ks], color=COLORS["jetloom"], alpha=0.8)
    _bar_labels(ax, bars, ",.0f")
    ax.set_xlabel("jetloom worker processes")
    ax.set_ylabel("transitions/s (bars)")
    ax2 = ax.twinx()
    for g, style in (("engine", "o-"), ("server", "s--")):
        ax2.plot(
            ks,
            [e[k]["cpu_us_per_transition"][g] for k in ks],
            style,
            color="black",
            label=f"jetloom {g} CPU",
        )
    plain = _ok(doc["scenarios"]["e"].get("no_affinity", {}))
    if all(k in plain for k in ks):
        ax2.plot(ks, [plain[k]["cpu_us_per_transition"]["engine"] for k in ks], "^-.",
                 color="grey", label="jetloom engine CPU, no affinity")  # fmt: skip
    lim = _ok(doc["scenarios"]["e"].get("limit", {}))
    if all(k in lim for k in ks):
        ax2.plot(ks, [lim[k]["cpu_us_per_transition"]["engine"] for k in ks], "o:",
                 color=COLORS["limit"], label="limit engine CPU")  # fmt: skip
    ax2.set_ylabel("CPU µs per transition (lines)")
    ax2.set_ylim(bottom=0)
    ax2.legend(loc="upper right")
    ax.set_title("(e) scale-out: throughput and CPU per transition (run affinity)")
    _save(fig, out, stem, "e-scaleout", paths)


def _plot_walls(doc: dict[str, Any], out: Path, stem: str, paths: list[Path]) -> None:
    sc = doc["scenarios"]
    panels = []
    if "results" in sc.get("c", {}):
        panels.append((f"(c) fan-out/in of {sc['c']['n']:,} events", sc["c"]["results"]))
    if "results" in sc.get("f", {}):
        r = sc["f"]["results"]
        panels.append(("(f) docindex", {"plain loop": r["plain"], "jetloom": r["jetloom"]}))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, res) in zip(axes[0], panels, strict=True):
        res = _ok(res)
        names = list(res)
        bars = ax.bar(names, [res[n]["wall_s"] for n in names],
                      color=[COLORS.get(n, "#8172b3") for n in names])  # fmt: skip
        _bar_labels(ax, bars, ",.2f")
        ax.set_ylabel("wall seconds per run")
        ax.set_title(title)
    _save(fig, out, stem, "c-f-wall", paths)


def render_plots(doc: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """Write the PNGs for whatever scenarios ``doc`` holds; returns their paths."""
    paths: list[Path] = []
    for plot in (_plot_targets, _plot_latency, _plot_throughput, _plot_cpu, _plot_rebuild,
                 _plot_scaleout, _plot_walls):  # fmt: skip
        try:
            plot(doc, out, stem, paths)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            # A failed measurement leaves holes; the JSON and the Markdown still say what failed.
            print(f"plot {plot.__name__} skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
            plt.close("all")
    return paths
