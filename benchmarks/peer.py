"""The **peer** baseline: llama-index-workflows 2.26 (import name ``workflows``) running the same
chain and fan workflows in-process, with no durability.

It runs in its own process (``python -m benchmarks.worker peer-chain|peer-fan``), which times itself
and prints one JSON line, so its CPU time is its own. The published peer figures this harness is
compared with (DESIGN.md §5, measured on this machine): 762 runs/s sequential (p50 1.29 ms),
864 runs/s at 100 concurrent.
"""

from __future__ import annotations

import time
from typing import Any

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent

from .measure import closed_loop, latency_summary
from .workflows import CHAIN_RESULT, CHAIN_TEXT, STEP_CONCURRENCY, fan_result

__all__ = ["PeerChain", "PeerFan", "measure_chain", "measure_fan"]


class PeerParsed(Event):
    words: list[str]


class PeerCounted(Event):
    n: int


class PeerChain(Workflow):
    @step(num_workers=STEP_CONCURRENCY)
    async def parse(self, ev: StartEvent) -> PeerParsed:
        return PeerParsed(words=ev.text.split())

    @step(num_workers=STEP_CONCURRENCY)
    async def count(self, ev: PeerParsed) -> PeerCounted:
        return PeerCounted(n=len(ev.words))

    @step(num_workers=STEP_CONCURRENCY)
    async def finish(self, ev: PeerCounted) -> StopEvent:
        return StopEvent(result=ev.n)


class PeerItem(Event):
    i: int


class PeerSquared(Event):
    i: int
    square: int


class PeerFan(Workflow):
    @step
    async def split(self, ctx: Context, ev: StartEvent) -> PeerItem | None:
        await ctx.store.set("expected", ev.n)
        for i in range(ev.n):
            ctx.send_event(PeerItem(i=i))
        return None

    @step(num_workers=STEP_CONCURRENCY)
    async def square(self, ev: PeerItem) -> PeerSquared:
        return PeerSquared(i=ev.i, square=ev.i * ev.i)

    @step(num_workers=STEP_CONCURRENCY)
    async def join(self, ctx: Context, ev: PeerSquared) -> StopEvent | None:
        got = ctx.collect_events(ev, [PeerSquared] * await ctx.store.get("expected"))
        if got is None:
            return None
        return StopEvent(result=sum(s.square for s in got))


async def measure_chain(*, runs: int, inflight: int, warmup: int) -> dict[str, Any]:
    """Run the chain ``warmup`` times, then ``runs`` times with ``inflight`` at once.

    Returns ``{"latencies_s": [...], "completed", "wall_s", "cpu_s"}`` (``cpu_s``: this process,
    user + system, over the measured runs only).
    """
    wf = PeerChain(timeout=120)

    async def one(_: int) -> bool:
        return await wf.run(text=CHAIN_TEXT) == CHAIN_RESULT

    await closed_loop(one, runs=warmup, inflight=min(inflight, max(warmup, 1)))
    cpu0 = time.process_time()
    latencies, completed, wall = await closed_loop(one, runs=runs, inflight=inflight)
    return {
        "latencies_s": latencies,
        "latency": latency_summary(latencies),
        "completed": completed,
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu0,
    }


async def measure_fan(*, n: int, reps: int) -> dict[str, Any]:
    """Run the fan over ``n`` items once to warm up, then ``reps`` times one after another.

    Returns ``{"walls_s": [...], "completed", "cpu_s"}``.
    """
    wf = PeerFan(timeout=600)
    await wf.run(n=min(n, 10))
    walls, completed = [], 0
    cpu0 = time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        completed += await wf.run(n=n) == fan_result(n)
        walls.append(time.perf_counter() - t0)
    return {"walls_s": walls, "completed": completed, "cpu_s": time.process_time() - cpu0}
