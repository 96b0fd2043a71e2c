"""(a) The 3-step chain, one run at a time: end-to-end latency p50/p99 of limit, peer and jetloom
(the three in ``rounds`` alternating rounds, pooled: ``ChainRig.alternate``)."""

from __future__ import annotations

from typing import Any

from ..harness import Harness
from .chain import ChainRig

TITLE = "3-step chain, one run at a time: end-to-end latency"


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    with ChainRig(h, h.server(), uvloop=h.uvloop) as rig:
        got = rig.alternate(runs=o.runs, inflight=1, label="(a)", rounds=o.rounds, hops=True, peer=True)
    return {"results": {"limit": got["limit"], "peer": got["peer"], "jetloom": got["jetloom"]}}
