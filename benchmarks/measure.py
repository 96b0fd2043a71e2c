"""Measuring: closed-loop load, latency percentiles, CPU time per process, event-loop choice.

Every figure the harness records is a plain dict (JSON-ready). Units are in the key names:
``_s`` seconds, ``_ms`` milliseconds, ``_us`` microseconds, ``per_s`` per second.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import psutil

__all__ = [
    "CpuMeter",
    "attempt",
    "closed_loop",
    "cdf_points",
    "latency_summary",
    "run_loop",
    "throughput_figures",
    "failure",
    "uvloop_available",
]

T = TypeVar("T")


def attempt(fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``fn(*args, **kwargs)``, or ``{"error": "<Type>: <message>"}`` if it raises: one system
    failing a measurement is a result to report, not a reason to lose the others."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported in the results
        return failure(exc)


def failure(exc: BaseException) -> dict[str, Any]:
    """A failed measurement as the results report it: ``{"error": "<Type>: <message>"}``."""
    return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


def uvloop_available() -> bool:
    """Whether uvloop (extra ``speedups``) is importable."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run_loop(main: Callable[[], Coroutine[Any, Any, T]], *, uvloop: bool) -> T:
    """Run ``main()`` to completion on a fresh event loop: uvloop's when ``uvloop`` is true (and
    installed), else asyncio's default loop. Each measured thing gets its own loop, so the loop
    is a per-measurement choice and nothing leaks between measurements."""
    if uvloop and uvloop_available():
        import uvloop as _uvloop

        return _uvloop.run(main())
    return asyncio.run(main())


def _quantile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values by linear interpolation (numpy's default)."""
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_summary(latencies_s: Iterable[float]) -> dict[str, float]:
    """``{"p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"}`` of latencies in seconds."""
    xs = sorted(latencies_s)
    if not xs:
        return {}
    ms = 1e3
    return {
        "p50_ms": _quantile(xs, 0.50) * ms,
        "p90_ms": _quantile(xs, 0.90) * ms,
        "p99_ms": _quantile(xs, 0.99) * ms,
        "mean_ms": statistics.fmean(xs) * ms,
        "min_ms": xs[0] * ms,
        "max_ms": xs[-1] * ms,
    }


def cdf_points(latencies_s: Iterable[float], points: int = 100) -> list[float]:
    """Latencies (ms) at ``points`` evenly spaced quantiles from 0 to 1: enough to draw a CDF
    without storing every sample."""
    xs = sorted(latencies_s)
    if not xs:
        return []
    return [_quantile(xs, i / (points - 1)) * 1e3 for i in range(points)]


class CpuMeter:
    """CPU seconds (user + system) spent by groups of processes between ``start()`` and ``stop()``.

    Args:
        groups: group name → process ids, e.g. ``{"engine": [w1, w2], "server": [nats_pid]}``.
            The calling process can be named with ``os.getpid()``. A process that exits before
            ``stop()`` counts what it had used at ``start()`` only.

    ``stop()`` returns ``{group: cpu_seconds}``.
    """

    def __init__(self, groups: dict[str, Iterable[int]]) -> None:
        self._procs = {g: [psutil.Process(p) for p in pids] for g, pids in groups.items()}
        self._start: dict[str, float] = {}

    @staticmethod
    def _cpu(procs: list[psutil.Process]) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def start(self) -> None:
        self._start = {g: self._cpu(ps) for g, ps in self._procs.items()}

    def stop(self) -> dict[str, float]:
        return {g: max(0.0, self._cpu(ps) - self._start[g]) for g, ps in self._procs.items()}


async def closed_loop(
    run_one: Callable[[int], Awaitable[bool]],
    *,
    runs: int,
    inflight: int,
    on_done: Callable[[], None] | None = None,
) -> tuple[list[float], int, float]:
    """Keep ``inflight`` runs going until ``runs`` have been started (a closed loop).

    Args:
        run_one: starts run number ``i``, waits for its end, returns whether its result was right.
        runs: how many runs in all.
        inflight: how many at once (1 = one run at a time).
        on_done: called after each run (progress display).

    Returns:
        ``(latencies_s, completed, wall_s)``: each run's start-to-result time in seconds, how many
        returned the right result, and the wall time of the whole loop.
    """
    latencies: list[float] = []
    completed = 0
    counter = iter(range(runs))

    async def lane() -> None:
        nonlocal completed
        for i in counter:
            t0 = time.perf_counter()
            ok = await run_one(i)
            latencies.append(time.perf_counter() - t0)
            completed += bool(ok)
            if on_done is not None:
                on_done()

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(max(1, min(inflight, runs)))))
    return latencies, completed, time.perf_counter() - t0


def throughput_figures(
    *,
    runs: int,
    completed: int,
    transitions_per_run: int,
    wall_s: float,
    cpu_s: dict[str, float],
    latencies_s: list[float] | None = None,
) -> dict[str, Any]:
    """The figures of one measurement: counts, wall time, rates, CPU seconds and CPU µs per
    transition per process group, and latency percentiles when given."""
    transitions = completed * transitions_per_run
    out: dict[str, Any] = {
        "runs": runs,
        "completed": completed,
        "transitions": transitions,
        "wall_s": wall_s,
        "runs_per_s": completed / wall_s if wall_s > 0 else 0.0,
        "transitions_per_s": transitions / wall_s if wall_s > 0 else 0.0,
        "cpu_s": cpu_s,
        "cpu_us_per_transition": {
            g: (v / transitions * 1e6 if transitions else None) for g, v in cpu_s.items()
        },
    }
    if latencies_s is not None:
        out["latency"] = latency_summary(latencies_s)
    return out
