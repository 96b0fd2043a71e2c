"""(a) The 3-step chain, one run at a time: end-to-end latency p50/p99 of limit, peer and jetloom."""

from __future__ import annotations

from typing import Any

from ..harness import Harness
from ..measure import attempt
from .chain import ChainRig, measure_peer_chain

TITLE = "3-step chain, one run at a time: end-to-end latency"


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    with ChainRig(h, h.server(), uvloop=h.uvloop) as rig:
        limit = attempt(rig.limit, runs=o.runs, inflight=1, label="(a) limit")
        peer = attempt(
            measure_peer_chain, h, runs=o.runs, inflight=1, uvloop=h.uvloop, label="(a) peer"
        )
        jetloom = attempt(rig.jetloom, runs=o.runs, inflight=1, label="(a) jetloom", hops=True)
    return {"results": {"limit": limit, "peer": peer, "jetloom": jetloom}}
