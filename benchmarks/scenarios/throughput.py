"""(b) The 3-step chain with ``inflight`` runs at once (default 100) and at saturation (default
300 at once): runs/s and step transitions/s of limit, peer and jetloom.

jetloom is measured twice: through its client (``NatsClient.start`` + ``await handler``, which the
targets use) and with a lean driver (start commit + one subscription for every run's end,
``jetloom_lean``), so the workers' throughput shows even where the client's per-run follow is
the limit.

With ``--retained-runs N``, (b) then adds N finished runs to both streams (``ChainRig.retain``) and
measures limit and jetloom again at ``inflight``: what a stream that keeps its runs costs."""

from __future__ import annotations

from typing import Any

from ..harness import Harness
from ..measure import attempt
from .chain import ChainRig

TITLE = "3-step chain, many runs in flight: throughput"


def measure_all(
    h: Harness, rig: ChainRig, *, runs: int, inflight: int, label: str, peer: bool = True
) -> dict[str, Any]:
    """limit, (peer,) jetloom, each ``runs`` runs with ``inflight`` at once, in
    ``h.options.rounds`` alternating rounds (``ChainRig.alternate``); then jetloom with the lean
    driver."""
    out = rig.alternate(runs=runs, inflight=inflight, label=label, rounds=h.options.rounds, peer=peer)
    out["jetloom_lean"] = attempt(
        rig.jetloom_lean, runs=runs, inflight=inflight, label=f"{label} jetloom (lean driver)"
    )
    return out


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    with ChainRig(h, h.server(), uvloop=h.uvloop) as rig:
        inflight = measure_all(
            h, rig, runs=o.throughput_runs, inflight=o.inflight, label=f"(b) {o.inflight} in flight"
        )
        saturated = measure_all(
            h,
            rig,
            runs=o.throughput_runs,
            inflight=o.saturation,
            label=f"(b) {o.saturation} in flight",
        )
        results = {"inflight": inflight, "saturated": saturated}
        if o.retained_runs:
            rig.retain(o.retained_runs, f"(b) adding {o.retained_runs:,} finished runs")
            label = f"(b) {o.inflight} in flight, {o.retained_runs:,} runs kept"
            results["retained"] = {
                "limit": attempt(rig.limit, runs=o.throughput_runs, inflight=o.inflight, label=f"{label} limit"),
                "jetloom": attempt(
                    rig.jetloom, runs=o.throughput_runs, inflight=o.inflight, label=f"{label} jetloom"
                ),
            }
    return {
        "inflight": o.inflight,
        "saturation": o.saturation,
        "retained_runs": o.retained_runs,
        "results": results,
    }
