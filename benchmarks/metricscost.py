"""What a worker's Prometheus metrics cost the engine: CPU per transition of a 3-step chain run
in-process on the memory log, with the executor's observer off and on (``services.metrics``),
alternated ABBA so that a machine getting slower or faster shows in both.

    python -m benchmarks.metricscost [--runs 2000] [--pairs 4]

Prints the CPU microseconds per transition of each measurement, and the ratios (on / off) of the
medians and of the minimums. The JetStream figure is scenario (b) with ``JETLOOM_BENCH_METRICS=1``
(docs/benchmarks.md, "Metrics").
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Annotated

import typer

from engine import Event, MemoryLog, StartEvent, StopEvent, Workflow, step
from engine.runtime.executor import Executor
from engine.runtime.inprocess import append_start
from services.metrics import WorkerMetrics

app = typer.Typer(add_completion=False)


class _A(Event):
    pass


class _B(Event):
    pass


class MetricsChain(Workflow):
    @step
    async def one(self, ev: StartEvent) -> _A:
        return _A()

    @step
    async def two(self, ev: _A) -> _B:
        return _B()

    @step
    async def three(self, ev: _B) -> StopEvent:
        return StopEvent(result=1)


async def cpu_per_transition(metrics: bool, runs: int, batch: int = 100) -> float:
    """CPU microseconds of this process per transition over ``runs`` chain runs started
    ``batch`` at a time, with (``metrics``) or without the observer."""
    log = MemoryLog()
    executor = Executor(MetricsChain(), log, observer=WorkerMetrics() if metrics else None)
    await executor.start()
    try:
        t0 = time.process_time()
        for i in range(0, runs, batch):
            await asyncio.gather(
                *(append_start(log, "MetricsChain", f"r{i + j}", StartEvent()) for j in range(batch))
            )
        while executor.stats.handled < runs * 3:
            await asyncio.sleep(0.005)
        return (time.process_time() - t0) / (runs * 3) * 1e6
    finally:
        await executor.stop()


async def _measure(runs: int, pairs: int) -> None:
    await cpu_per_transition(False, min(runs, 200))  # warm-up
    found: dict[bool, list[float]] = {False: [], True: []}
    for i in range(pairs * 2):
        for on in (False, True) if i % 2 == 0 else (True, False):
            found[on].append(await cpu_per_transition(on, runs))
    for on in (False, True):
        print(f"metrics {'on ' if on else 'off'}: " + ", ".join(f"{x:.1f}" for x in found[on]) + " µs/transition")
    med = statistics.median(found[True]) / statistics.median(found[False])
    low = min(found[True]) / min(found[False])
    print(f"on / off: medians {med:.3f}, minimums {low:.3f}")


@app.command()
def main(
    runs: Annotated[int, typer.Option(min=100, help="Chain runs per measurement.")] = 2000,
    pairs: Annotated[int, typer.Option(min=1, help="ABBA pairs of measurements (off, on, on, off).")] = 4,
) -> None:
    """Engine CPU per transition in-process, metrics off and on."""
    asyncio.run(_measure(runs, pairs))


if __name__ == "__main__":
    app()
