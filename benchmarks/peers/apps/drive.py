"""The driver loop every peer's driver process runs (in the peers' own venv, not the project's).

Protocol with ``benchmarks.peers.procs.drive``: the driver runs ``warmup`` unmeasured runs, prints
``warm`` and waits for one line on stdin (the harness reads every process's CPU time then), runs
``runs`` runs with ``inflight`` at once, and prints one JSON line::

    {"latencies_s": [...], "completed": int, "wall_s": float}

``completed`` counts the runs whose result was the chain's (9 words in ``CHAIN_TEXT``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

# benchmarks/measure.py needs only the standard library and psutil: the peers' venv imports it as a
# top-level module, without the benchmarks package (whose __init__ imports jetloom)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from measure import closed_loop  # noqa: E402

CHAIN_TEXT = "the quick brown fox jumps over the lazy dog"
CHAIN_RESULT = len(CHAIN_TEXT.split())


def parse(text: str) -> list[str]:
    """Step 1 of the chain: the words of ``text``."""
    return text.split()


def count(words: list[str]) -> int:
    """Step 2: how many words."""
    return len(words)


def finish(n: int) -> int:
    """Step 3: the run's result."""
    return n


async def drive(run_one: Callable[[int], Awaitable[int]], *, runs: int, inflight: int, warmup: int) -> None:
    """Warm up, say ``warm``, wait for the harness's go line, measure, print the JSON line."""

    async def right(i: int) -> bool:
        return await run_one(i) == CHAIN_RESULT

    await closed_loop(lambda i: right(runs + i), runs=warmup, inflight=inflight)
    print("warm", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    latencies, completed, wall = await closed_loop(right, runs=runs, inflight=inflight)
    print(json.dumps({"latencies_s": latencies, "completed": completed, "wall_s": wall}), flush=True)


def options(args: list[str]) -> tuple[str, int, int, int]:
    """``--url U --runs N --inflight K --warmup W`` → ``(url, runs, inflight, warmup)``."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--inflight", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    ns = p.parse_args(args)
    return ns.url, ns.runs, ns.inflight, ns.warmup
