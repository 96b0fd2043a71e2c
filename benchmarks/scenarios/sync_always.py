"""(g) (a) and (b) again on a second server whose ``jetstream`` block has ``sync_interval: always``
(every write fsynced before it is acknowledged; the configuration the 2025 Jepsen analysis of
NATS calls safe). limit and jetloom only: the peer has no log, its figures are in (a)/(b)."""

from __future__ import annotations

from typing import Any

from ..harness import Harness
from ..measure import attempt
from .chain import ChainRig
from .throughput import measure_all

TITLE = "(a) and (b) with sync_interval: always"


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    with ChainRig(h, h.server(sync_always=True), uvloop=h.uvloop) as rig:
        latency = {
            "limit": attempt(rig.limit, runs=o.runs, inflight=1, label="(g) sequential limit"),
            "jetloom": attempt(
                rig.jetloom, runs=o.runs, inflight=1, label="(g) sequential jetloom"
            ),
        }
        inflight = measure_all(
            h,
            rig,
            runs=o.throughput_runs,
            inflight=o.inflight,
            label=f"(g) {o.inflight} in flight",
            peer=False,
        )
        saturated = measure_all(
            h,
            rig,
            runs=o.throughput_runs,
            inflight=o.saturation,
            label=f"(g) {o.saturation} in flight",
            peer=False,
        )
    return {
        "server_config": "repo nats.conf + jetstream.sync_interval: always",
        "results": {"sequential": latency, "inflight": inflight, "saturated": saturated},
    }
