"""(u) The uvloop switch both ways: (a) and (b) at ``inflight`` runs again with the other event loop
in the driver, the workers and the peer (the main run uses uvloop when it is installed)."""

from __future__ import annotations

from typing import Any

from ..harness import Harness
from ..measure import attempt, uvloop_available
from .chain import ChainRig, measure_peer_chain
from .throughput import measure_all

TITLE = "(a) and (b) with the other event loop (uvloop both ways)"


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    if not uvloop_available():
        return {
            "skipped": "uvloop is not installed (extra `speedups`); only the asyncio figures exist"
        }
    other = not h.uvloop
    with ChainRig(h, h.server(), uvloop=other) as rig:
        latency = {
            "limit": attempt(rig.limit, runs=o.runs, inflight=1, label="(u) sequential limit"),
            "peer": attempt(
                measure_peer_chain,
                h,
                runs=o.runs,
                inflight=1,
                uvloop=other,
                label="(u) sequential peer",
            ),
            "jetloom": attempt(
                rig.jetloom, runs=o.runs, inflight=1, label="(u) sequential jetloom"
            ),
        }
        inflight = measure_all(
            h, rig, runs=o.throughput_runs, inflight=o.inflight, label=f"(u) {o.inflight} in flight"
        )
    return {"uvloop": other, "results": {"sequential": latency, "inflight": inflight}}
