"""(m) Memory over many runs: the resident set size (RSS) of a jetloom worker process and of the
control plane while ``memory_runs`` chain runs (default 10,000) go through the control plane
(``POST /workflows/BenchChain/runs?wait=true``, ``inflight`` at once, so both processes do work
for every run).

Each process's RSS is read (psutil) when 1 %, 10 %, 50 % and 100 % of the runs have completed,
and its peak (``VmHWM``, the kernel's high-water mark of the process's RSS since it started)
at the end. "Flat" is the RSS at the end over the RSS at 10 % of the runs (1,000 of 10,000:
after warm-up, the run cache and the allocator's pools filled), a target of
``benchmarks.targets`` (``m.worker_rss_growth``, ``m.control_rss_growth``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil

from ..harness import Harness
from ..measure import closed_loop, run_loop
from .chain import ChainRig, warmup_runs
from .http import ControlPlaneChild, chain_poster

__all__ = ["CHECKPOINTS", "peak_rss", "run"]

TITLE = "RSS of a worker and of the control plane over many runs through the HTTP API"

#: Shares of the runs at which RSS is read; the growth target compares the last with 10 %.
CHECKPOINTS = (0.01, 0.1, 0.5, 1.0)
_MB = 1024 * 1024


def peak_rss(pid: int) -> int | None:
    """The process's peak RSS in bytes (``VmHWM`` of ``/proc/<pid>/status``); ``None`` where
    the kernel does not report it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    runs = o.memory_runs
    marks = sorted({max(1, round(runs * c)) for c in CHECKPOINTS})
    with ChainRig(h, h.server(), uvloop=h.uvloop, limit=False) as rig:
        control = ControlPlaneChild(rig.url)
        try:
            procs = {"worker": psutil.Process(rig.jetloom_workers[0].pid), "control": psutil.Process(control.pid)}
            samples: dict[str, list[dict[str, Any]]] = {name: [] for name in procs}
            done = 0

            def on_done() -> None:
                nonlocal done
                done += 1
                advance()
                if done in marks:
                    for name, proc in procs.items():
                        samples[name].append({"runs": done, "rss_mb": proc.memory_info().rss / _MB})

            async def main() -> tuple[int, float]:
                async with chain_poster(control, o.inflight) as one:
                    await closed_loop(one, runs=warmup_runs(runs), inflight=o.inflight)
                    _, completed, wall = await closed_loop(one, runs=runs, inflight=o.inflight, on_done=on_done)
                return completed, wall

            with h.task(f"(m) {runs:,} runs through the HTTP API, {o.inflight} in flight", runs) as advance:
                completed, wall = run_loop(main, uvloop=rig.uvloop)
            results: dict[str, Any] = {}
            for name, proc in procs.items():
                peak = peak_rss(proc.pid)
                rss = samples[name]
                base = next((s["rss_mb"] for s in rss if s["runs"] >= round(runs * 0.1)), None)
                results[name] = {
                    "samples": rss,
                    "peak_rss_mb": peak / _MB if peak is not None else None,
                    "growth": rss[-1]["rss_mb"] / base if base and rss else None,
                    "pid": proc.pid,
                }
        finally:
            control.stop()
    return {
        "runs": runs,
        "completed": completed,
        "wall_s": wall,
        "inflight": o.inflight,
        "growth_from_runs": max(1, round(runs * 0.1)),
        "driver_pid": os.getpid(),
        "results": results,
    }
