"""(k) Crash recovery: how long after a worker process is SIGKILLed in the middle of a step the
step starts again in another worker process, with the workers' default ``ack_wait`` and progress
heartbeat (``jetloom worker --ack-wait/--progress-heartbeat``).

Two worker processes serve a one-step workflow whose step marks its start in a file (with its
pid) and then waits. Per trial: start a run, wait for the mark, SIGKILL the process holding the
step, and time until the other process's mark appears (polled every 10 ms); then let the step
end, check the run completed, and start a fresh worker in place of the killed one. The killed
worker's in-progress acks stop with it, so the trigger is redelivered ``ack_wait`` after the last
one it sent: with the kill right after the step starts, the time measured is close to ``ack_wait``
(the bound), less the time since that last ack.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from engine.jetstream.log import DEFAULT_ACK_WAIT, DEFAULT_PROGRESS_HEARTBEAT
from services.nats_client import NatsClient

from ..harness import Harness
from ..procs import Child, start_children
from ..workflows import BenchHold

TITLE = "crash recovery: SIGKILL of the worker running a step → the step reruns in another worker"
PREFIX = "jlrecovery"  # streams of their own (JLRECOVERY), apart from the chain's
WAIT_S = 60.0  # a trial gives up after this long without the mark it waits for


def _marks(folder: Path) -> list[Path]:
    return sorted(folder.glob("started-*"), key=lambda p: p.stat().st_mtime_ns)


async def _until_marks(folder: Path, n: int) -> list[Path]:
    deadline = time.monotonic() + WAIT_S
    while len(marks := _marks(folder)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {n} start mark(s) in {folder} within {WAIT_S:g}s")
        await asyncio.sleep(0.01)
    return marks


async def _trial(url: str, folder: Path, workers: list[Child], args: list[str]) -> dict[str, Any]:
    client = await NatsClient.connect(url, prefix=PREFIX)
    try:
        handler = await client.start(BenchHold, dir=str(folder))
        (first,) = await _until_marks(folder, 1)
        holder = next(w for w in workers if first.name.startswith(f"started-{w.pid}-"))
        holder.proc.kill()
        killed = time.monotonic()
        second = (await _until_marks(folder, 2))[1]
        rerun_s = time.monotonic() - killed
        (folder / "go").write_text("1")
        result = await asyncio.wait_for(handler, WAIT_S)
    finally:
        await client.close()
    holder.proc.wait(10)
    workers.remove(holder)
    fresh = Child(args, "jetloom worker ready")
    workers.append(fresh)
    await asyncio.to_thread(fresh.wait_ready)
    return {
        "rerun_s": rerun_s,
        "killed_pid": holder.pid,
        "rerun_pid": int(second.name.split("-")[1]),
        "completed": result == "done",
    }


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    url = h.server().url
    args = ["jetloom", "benchmarks.workflows:BenchHold", "--nats", url, "--prefix", PREFIX,
            "--uvloop" if h.uvloop else "--no-uvloop"]  # fmt: skip
    workers = start_children([args, args], "jetloom worker ready")
    trials: list[dict[str, Any]] = []
    try:
        for i in range(o.recovery_trials):
            folder = h.tmp / "recovery" / str(i)
            folder.mkdir(parents=True)
            trials.append(asyncio.run(_trial(url, folder, workers, args)))
    finally:
        for w in workers:
            w.stop()
    reruns = [t["rerun_s"] for t in trials]
    return {
        "ack_wait_s": DEFAULT_ACK_WAIT.total_seconds(),
        "progress_heartbeat_s": DEFAULT_PROGRESS_HEARTBEAT.total_seconds(),
        "trials": trials,
        "results": {
            "rerun_s": {"p50": statistics.median(reruns), "max": max(reruns), "min": min(reruns)},
            "completed": sum(t["completed"] for t in trials),
            "trials": len(trials),
        },
    }
