"""(r) The chain with ``inflight`` runs at once (default 100) on a local 3-node cluster whose
streams and buckets have 3 replicas, beside the same chain on one node (R1), in the same
invocation: what replication costs. Rounds alternate between the two (``--rounds``, as in (a) and
(b)) and are pooled, so the ratio compares the set-ups rather than the machine's drift.

On one host the three nodes share its cores: a replicated write is stored three times and makes a
round trip from the stream leader to a follower (quorum 2 of 3) before its ack, so both the
latency and the server CPU per transition grow; on three machines the CPU would be spread out."""

from __future__ import annotations

from typing import Any

from ..harness import Harness
from ..measure import failure
from .chain import ChainRig, Round

TITLE = "3-step chain, runs in flight: 3 nodes R3 beside 1 node R1"


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    rounds = max(1, min(o.rounds, o.throughput_runs))
    sizes = [o.throughput_runs // rounds + (1 if i < o.throughput_runs % rounds else 0) for i in range(rounds)]
    parts: dict[str, list[Round]] = {"r1": [], "r3": []}
    failed: dict[str, dict[str, Any]] = {}
    with (
        ChainRig(h, h.server(), uvloop=h.uvloop, limit=False) as single,
        ChainRig(h, h.cluster(), uvloop=h.uvloop, limit=False, replicas=3) as cluster,
    ):
        for i, n in enumerate(sizes):
            tag = f"(r) {o.inflight} in flight round {i + 1}/{rounds}"
            for key, rig, what in (("r1", single, "1 node R1"), ("r3", cluster, "3 nodes R3")):
                if key in failed:
                    continue
                try:
                    parts[key].append(rig.jetloom_round(runs=n, inflight=o.inflight, label=f"{tag} {what}"))
                except Exception as exc:  # noqa: BLE001 - reported in the results
                    failed[key] = failure(exc)
        results = {k: failed.get(k) or single.pool(parts[k], o.inflight) for k in parts}
    ratio = None
    if "error" not in results["r1"] and "error" not in results["r3"] and results["r1"]["transitions_per_s"]:
        ratio = results["r3"]["transitions_per_s"] / results["r1"]["transitions_per_s"]
    return {
        "inflight": o.inflight,
        "nodes": 3,
        "replicas": 3,
        "results": results,
        "r3_over_r1_transitions": ratio,
    }
