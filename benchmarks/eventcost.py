"""What events cost: the chain benchmark's event operations one by one (``timeit``, best of 5), the
event work of one chain run as a worker does it, and a whole chain run in one process on a
``MemoryLog`` (engine and driver together), in CPU microseconds.

Run it from the root of each checkout to compare (docs/benchmarks.md, "Events as pydantic models:
cost")::

    python -m benchmarks.eventcost [--runs 1500] [--inflight 300] [--no-gc | --settle] [--chain-only] [--gc-time]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import timeit
from collections.abc import Callable
from typing import Any

from benchmarks.workflows import (
    CHAIN_TEXT,
    CHAIN_TRANSITIONS,
    BenchChain,
    BenchCounted,
    BenchParsed,
)
from engine import MemoryLog, StartEvent, StopEvent
from engine.model.events import (
    decode_event,
    encode_checked,
    encode_event,
    event_fields,
    event_from_fields,
)
from services.heap import settle_heap


def _best_us(fn: Callable[[], Any], number: int = 20_000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def operations() -> dict[str, float]:
    """µs per call of each event operation a chain run makes."""
    start = encode_event(StartEvent(text=CHAIN_TEXT))
    parsed = BenchParsed(words=CHAIN_TEXT.split())
    counted = BenchCounted(n=9)
    stop = StopEvent(result=9)
    p_data, c_data = encode_event(parsed), encode_event(counted)
    return {
        "decode StartEvent": _best_us(lambda: decode_event(StartEvent, start)),
        "build BenchParsed": _best_us(lambda: BenchParsed(words=CHAIN_TEXT.split())),
        "encode_checked BenchParsed": _best_us(lambda: encode_checked(parsed)),
        "decode BenchParsed": _best_us(lambda: decode_event(BenchParsed, p_data)),
        "build BenchCounted": _best_us(lambda: BenchCounted(n=9)),
        "encode_checked BenchCounted": _best_us(lambda: encode_checked(counted)),
        "decode BenchCounted": _best_us(lambda: decode_event(BenchCounted, c_data)),
        "build StopEvent": _best_us(lambda: StopEvent(result=9)),
        "event_fields StopEvent": _best_us(lambda: event_fields(stop)),
        "event_from_fields StopEvent": _best_us(lambda: event_from_fields(StopEvent, {"result": 9})),
    }


def run_work() -> float:
    """µs per transition of the event work of one chain run in a worker: three decodes, three
    builds, two checked encodes and the stop event's fields."""
    start = encode_event(StartEvent(text=CHAIN_TEXT))

    def one() -> None:
        s = decode_event(StartEvent, start)
        p = decode_event(BenchParsed, encode_checked(BenchParsed(words=s.text.split())))  # type: ignore[attr-defined]  # an undeclared field
        c = decode_event(BenchCounted, encode_checked(BenchCounted(n=len(p.words))))  # type: ignore[attr-defined]  # a BenchParsed
        event_fields(StopEvent(result=c.n))  # type: ignore[attr-defined]  # a BenchCounted

    return _best_us(one) / CHAIN_TRANSITIONS


async def _chain(runs: int, inflight: int) -> float:
    wf = BenchChain(timeout=60, log=MemoryLog())
    gate = asyncio.Semaphore(inflight)

    async def one() -> None:
        async with gate:
            await wf.run(text=CHAIN_TEXT)

    await asyncio.gather(*(one() for _ in range(100)))  # warm up
    t0 = time.process_time()
    await asyncio.gather(*(one() for _ in range(runs)))
    return (time.process_time() - t0) / (runs * CHAIN_TRANSITIONS) * 1e6


class _CollectorTimer:
    """CPU seconds spent inside the cyclic collector, and collections per generation, while
    registered in ``gc.callbacks``."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.collections = [0, 0, 0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.process_time()
        else:
            self.cpu_s += time.process_time() - self._t0
            self.collections[info["generation"]] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1500, help="chain runs in the in-process figure")
    parser.add_argument("--inflight", type=int, default=300, help="runs in flight in the in-process figure")
    parser.add_argument("--no-gc", action="store_true", help="cyclic GC off for the in-process figure")
    parser.add_argument("--settle", action="store_true", help="a step worker's collector settings for it")
    parser.add_argument("--chain-only", action="store_true", help="only the in-process figure")
    parser.add_argument("--gc-time", action="store_true", help="the collector's share of the in-process figure")
    args = parser.parse_args()
    if not args.chain_only:
        for name, us in operations().items():
            print(f"{name:30s} {us:6.2f} µs")
        print(f"{'event work of a run':30s} {run_work():6.2f} µs per transition")
    if args.no_gc:
        gc.disable()
    elif args.settle:
        settle_heap()
    timer = _CollectorTimer()
    if args.gc_time:
        gc.callbacks.append(timer)
    chain = asyncio.run(_chain(args.runs, args.inflight))
    print(f"{'in-process chain, CPU':30s} {chain:6.1f} µs per transition ({args.inflight} in flight)")
    if args.gc_time:  # (the warm-up runs' collections included, divided by the measured transitions)
        per = timer.cpu_s / (args.runs * CHAIN_TRANSITIONS) * 1e6
        print(f"{'  of which the collector':30s} {per:6.1f} µs per transition; collections {timer.collections}")


if __name__ == "__main__":
    main()
