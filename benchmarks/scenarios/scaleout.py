"""(e) Scale-out: the chain at ``inflight`` runs at once with 1, 2 and 4 jetloom worker processes
sharing the step consumers (8 too on a machine with 8 or more cores). On 2 cores wall-clock
cannot show scaling; CPU seconds per transition (summed over the workers) shows what spreading
a workflow over processes costs.

Three systems, measured in alternating rounds (each round: at each process count, jetloom with
run affinity, jetloom without, the limit) so that the machine's drift hits them alike:

- jetloom with run affinity (``engine.runtime.affinity``, the workers' default): a run's steps go
  to the process that owns it;
- jetloom with ``--no-affinity``: a step lands on whichever process pulls it, and a process that
  did not make the run's last commit reads the run's new records first;
- the limit (hand-written nats-py processes sharing its consumers): what spreading costs with no
  engine at all (each process gets fewer messages per socket read and write, and more processes
  than cores take turns), the floor under jetloom's own ratio.

Each jetloom variant has its own worker processes on streams of their own (``--prefix``), all
started once; the limit's processes are started and stopped as the count changes. The verdict
figures are per-round ratios ``n ÷ 1`` of CPU per transition, and their median across rounds
(with the spread beside it).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import Any

from ..harness import Harness
from ..measure import failure
from ..procs import Child
from .chain import ChainRig, Round

TITLE = "scale-out over worker processes, with and without run affinity"

#: jetloom's variants: name -> the bench worker's ``JETLOOM_BENCH_AFFINITY``
VARIANTS = {"affinity": "1", "no_affinity": "0"}
SYSTEMS = ("affinity", "no_affinity", "limit")
GROUPS = ("engine", "server")


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    counts = sorted(set(o.scale_workers) | {1})
    if (os.cpu_count() or 1) >= 8 and 8 not in counts:
        counts.append(8)
    rounds = 1 if o.quick else max(5, o.rounds)
    runs = o.throughput_runs
    parts: dict[str, dict[str, list[Round]]] = {s: {str(n): [] for n in counts} for s in SYSTEMS}
    failed: dict[str, dict[str, Any]] = {}
    with ChainRig(h, h.server(), uvloop=h.uvloop, jetloom_workers=0, limit=False) as rig:
        sets: dict[tuple[str, int], list[Child]] = {}
        for variant, flag in VARIANTS.items():
            for n in counts:
                sets[variant, n] = rig.add_jetloom_workers(
                    n, prefix=_prefix(variant, n), env={"JETLOOM_BENCH_AFFINITY": flag}
                )
        for i in range(rounds):
            for n in counts:
                tag = f"(e) round {i + 1}/{rounds}, {n} process(es)"
                calls: dict[str, Callable[[], Round]] = {
                    variant: lambda v=variant, n=n, tag=tag: rig.jetloom_round(
                        runs=runs, inflight=o.inflight, label=f"{tag}, jetloom {v}",
                        prefix=_prefix(v, n), workers=sets[v, n],
                    )  # fmt: skip
                    for variant in VARIANTS
                }
                calls["limit"] = lambda n=n, tag=tag: _limit_round(rig, n, runs, o.inflight, f"{tag}, limit")
                for system, call in calls.items():
                    if system in failed:
                        continue
                    try:
                        parts[system][str(n)].append(call())
                    except Exception as exc:  # noqa: BLE001 - reported in the results
                        failed[system] = failure(exc)
    pooled = {
        s: failed.get(s) or {k: rig.pool(v, o.inflight) for k, v in parts[s].items() if v} for s in SYSTEMS
    }
    per_round = [
        {s: _ratios(pooled[s], i, counts) for s in SYSTEMS if s not in failed} for i in range(rounds)
    ]
    note = None
    if (os.cpu_count() or 1) < 8:
        note = f"{os.cpu_count()} cores: 8 processes not measured (only where 8+ cores are at hand)"
    return {
        "workers": counts,
        "inflight": o.inflight,
        "rounds": rounds,
        "note": note,
        "results": pooled["affinity"],  # (jetloom as a worker runs by default)
        "no_affinity": pooled["no_affinity"],
        "limit": pooled["limit"],
        "per_round": per_round,
        "ratios": _medians(per_round),
    }


def _prefix(variant: str, n: int) -> str:
    return f"jle{variant.replace('_', '')}{n}"


def _limit_round(rig: ChainRig, n: int, runs: int, inflight: int, label: str) -> Round:
    """The limit with exactly ``n`` processes: started or stopped to that count first."""
    while len(rig.limit_workers) > n:
        rig.limit_workers.pop().stop()
    if len(rig.limit_workers) < n:
        rig.add_limit_workers(n - len(rig.limit_workers))
    return rig.limit_round(runs=runs, inflight=inflight, label=label)


def _ratios(results: dict[str, Any], i: int, counts: list[int]) -> dict[str, float | None]:
    """Round ``i`` of one system (its pooled results by process count, each with ``per_round``):
    ``{"<group>_<n>_vs_1": CPU µs per transition at n ÷ at 1}``, and the per-transition figures
    themselves (``<group>_us_<n>``)."""
    per: dict[int, dict[str, float]] = {}
    for n in counts:
        rounds = results.get(str(n), {}).get("per_round", [])
        if i < len(rounds):
            per[n] = rounds[i]["cpu_us_per_transition"]
    out: dict[str, float | None] = {}
    for n, figures in per.items():
        for g in GROUPS:
            out[f"{g}_us_{n}"] = figures.get(g)
    base = per.get(1)
    for n in counts:
        if n == 1 or n not in per or base is None:
            continue
        for g in GROUPS:
            a, b = per[n].get(g), base.get(g)
            out[f"{g}_{n}_vs_1"] = a / b if a and b else None
    return out


def _medians(per_round: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, Any]]:
    """For each system and each ratio: ``{"median", "min", "max", "rounds": [...]}`` over the
    rounds; and ``own``: jetloom with affinity's ratio ÷ the limit's, round by round."""
    keys = {(s, k) for r in per_round for s, figures in r.items() for k in figures if "_vs_" in k}
    out: dict[str, dict[str, Any]] = {}
    for s, k in sorted(keys):
        out.setdefault(s, {})[k] = _summary([r.get(s, {}).get(k) for r in per_round])
    for variant in VARIANTS:
        for k in {k for s, k in keys if s == variant}:
            own = []
            for r in per_round:
                a, b = r.get(variant, {}).get(k), r.get("limit", {}).get(k)
                own.append(a / b if a and b else None)
            out.setdefault(f"{variant}_own", {})[k] = _summary(own)
    return out


def _summary(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    if not got:
        return {"median": None, "min": None, "max": None, "rounds": values}
    return {"median": statistics.median(got), "min": min(got), "max": max(got), "rounds": values}
