"""(a) The 3-step chain, one run at a time: end-to-end latency p50/p99 of limit, peer and jetloom
(limit and jetloom in ``rounds`` alternating rounds, pooled: ``ChainRig.alternate``)."""

from __future__ import annotations

from typing import Any

from ..harness import Harness
from ..measure import attempt
from .chain import ChainRig, measure_peer_chain

TITLE = "3-step chain, one run at a time: end-to-end latency"


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    with ChainRig(h, h.server(), uvloop=h.uvloop) as rig:
        # limit and jetloom in alternating rounds (ChainRig.alternate), then the peer
        both = rig.alternate(runs=o.runs, inflight=1, label="(a)", rounds=o.rounds, hops=True)
        peer = attempt(
            measure_peer_chain, h, runs=o.runs, inflight=1, uvloop=h.uvloop, label="(a) peer"
        )
    return {"results": {"limit": both["limit"], "peer": peer, "jetloom": both["jetloom"]}}
