"""(c) Fan-out/fan-in of ``fan_n`` events (default 1,000) in one run: ``split`` emits n items,
``square`` handles each, ``join`` collects all n. Wall time per run and CPU per transition
(``1 + 2n`` transitions per run) of limit, peer and jetloom."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from typing import Any

from services.nats_client import NatsClient

from ..harness import Harness
from ..limit import LimitClient
from ..measure import CpuMeter, attempt, run_loop
from ..procs import Child, run_json, start_children
from ..workflows import BenchFan, fan_result, fan_transitions
from .chain import jetloom_worker_args

TITLE = "fan-out/fan-in of n events in one run"


def _figures(n: int, walls: list[float], completed: int, cpu: dict[str, float]) -> dict[str, Any]:
    transitions = completed * fan_transitions(n)
    wall = statistics.median(walls) if walls else 0.0
    return {
        "n": n,
        "runs": len(walls),
        "completed": completed,
        "walls_s": walls,
        "wall_s": wall,
        "transitions": transitions,
        "transitions_per_s": fan_transitions(n) / wall if wall else 0.0,
        "cpu_s": cpu,
        "cpu_us_per_transition": {
            g: (v / transitions * 1e6 if transitions else None) for g, v in cpu.items()
        },
    }


def _measure(h: Harness, workers: list[Child], label: str, one: Any) -> dict[str, Any]:
    """Warm up with a run of 10 items, then ``fan_reps`` runs of ``fan_n``, one at a time."""
    o = h.options
    srv = h.server()
    meter = CpuMeter(
        {"engine": [c.pid for c in workers], "server": [srv.pid or 0], "driver": [os.getpid()]}
    )

    async def main() -> dict[str, Any]:
        async with one() as run:
            await run(10)
            walls, completed = [], 0
            with h.task(label, o.fan_reps) as advance:
                meter.start()
                for _ in range(o.fan_reps):
                    t0 = time.perf_counter()
                    completed += await run(o.fan_n) == fan_result(o.fan_n)
                    walls.append(time.perf_counter() - t0)
                    advance(1)
                cpu = meter.stop()
        return _figures(o.fan_n, walls, completed, cpu)

    return run_loop(main, uvloop=h.uvloop)


class _LimitRuns:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> Any:
        self.client = await LimitClient.connect(self.url)
        return lambda n: self.client.run_fan(uuid.uuid4().hex, n)

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


class _JetloomRuns:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> Any:
        self.client = await NatsClient.connect(self.url)

        async def run(n: int) -> Any:
            handler = await self.client.start(BenchFan, n=n, timeout=1800)
            return await handler

        return run

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    srv = h.server()
    uv = "--uvloop" if h.uvloop else "--no-uvloop"
    limit_w = start_children([["limit", "--nats", srv.url, uv]], "limit worker ready")
    try:
        limit = attempt(
            _measure, h, limit_w, f"(c) fan {o.fan_n} limit", lambda: _LimitRuns(srv.url)
        )
    finally:
        for c in limit_w:
            c.stop()
    with h.task(f"(c) fan {o.fan_n} peer", o.fan_reps) as advance:
        res = run_json(["peer-fan", str(o.fan_n), str(o.fan_reps), uv])
        advance(o.fan_reps)
    peer = _figures(o.fan_n, res["walls_s"], res["completed"], {"engine": res["cpu_s"]})
    peer["note"] = "in-process: engine and driver are one process; no server"
    jl_w = start_children(
        [jetloom_worker_args("benchmarks.workflows:BenchFan", srv.url, h.uvloop)],
        "jetloom worker ready",
    )
    try:
        jetloom = attempt(
            _measure, h, jl_w, f"(c) fan {o.fan_n} jetloom", lambda: _JetloomRuns(srv.url)
        )
    finally:
        for c in jl_w:
            c.stop()
    return {"n": o.fan_n, "results": {"limit": limit, "peer": peer, "jetloom": jetloom}}
