"""(e) Scale-out: the chain at ``inflight`` runs at once with 1, 2 and 4 jetloom worker processes
sharing the step consumers (8 too on a machine with 8 or more cores). On 2 cores wall-clock
cannot show scaling; CPU seconds per transition (summed over the workers) shows what spreading
a workflow over processes costs.

The limit is measured with as many processes sharing its consumers (``limit``): what spreading
costs with no engine at all (each process gets fewer messages per socket read and write, and more
processes than cores take turns), the floor under jetloom's own ratio."""

from __future__ import annotations

import os
from typing import Any

from ..harness import Harness
from ..measure import attempt
from .chain import ChainRig

TITLE = "scale-out over worker processes"


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    counts = sorted(set(o.scale_workers))
    if (os.cpu_count() or 1) >= 8 and 8 not in counts:
        counts.append(8)
    results: dict[str, Any] = {}
    limit: dict[str, Any] = {}
    with ChainRig(h, h.server(), uvloop=h.uvloop, jetloom_workers=0, limit=False) as rig:
        for n in counts:
            rig.add_jetloom_workers(n - len(rig.jetloom_workers))
            results[str(n)] = attempt(
                rig.jetloom,
                runs=o.throughput_runs,
                inflight=o.inflight,
                label=f"(e) {n} worker process(es)",
            )
            rig.add_limit_workers(n - len(rig.limit_workers))
            limit[str(n)] = attempt(
                rig.limit,
                runs=o.throughput_runs,
                inflight=o.inflight,
                label=f"(e) limit, {n} process(es)",
            )
    note = None
    if (os.cpu_count() or 1) < 8:
        note = f"{os.cpu_count()} cores: 8 processes not measured (only where 8+ cores are at hand)"
    return {"workers": counts, "inflight": o.inflight, "note": note, "results": results, "limit": limit}
