"""(p) What nats-py's fast path buys: jetloom's chain of (a) (one run at a time) and of (b)
(``inflight`` at once) with the fast path on and off (``JETLOOM_NATS_FASTPATH=0`` in the workers
and the driver: nats-py's public API throughout, as when the gate of ``engine.jetstream._natspy``
refuses the installed nats-py).

The two are measured in ``rounds`` alternating rounds, each with worker processes started for it
(a worker reads the switch when it connects), and pooled. ``ratios`` compares them: the fast
path's transitions per second over the public path's, and the public path's p50 latency and
CPU per transition over the fast path's (above 1: what the fast path saves).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from engine.jetstream.log import FAST_PATH_ENV

from ..harness import Harness
from ..measure import failure
from .chain import ChainRig, Round, pool

TITLE = "(a) and (b) of jetloom with nats-py's fast path on and off"

PATHS = {"fast path": "1", "public API": "0"}


@contextlib.contextmanager
def _switch(value: str) -> Iterator[None]:
    """``JETLOOM_NATS_FASTPATH=value`` in this process (the driver's client) and the worker
    processes started meanwhile (they inherit the environment)."""
    before = os.environ.get(FAST_PATH_ENV)
    os.environ[FAST_PATH_ENV] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(FAST_PATH_ENV, None)
        else:
            os.environ[FAST_PATH_ENV] = before


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The fast path against the public API, from pooled ``results`` (``{"sequential": {path:
    figures}, "inflight": {...}}``); ``None`` where a side failed."""
    out: dict[str, float | None] = {}
    for mode in ("sequential", "inflight"):
        fast, public = results[mode].get("fast path", {}), results[mode].get("public API", {})
        if "error" in fast or "error" in public or not fast or not public:
            out.update({f"{mode}_transitions": None, f"{mode}_p50": None, f"{mode}_engine_cpu": None})
            continue
        out[f"{mode}_transitions"] = _ratio(fast["transitions_per_s"], public["transitions_per_s"])
        out[f"{mode}_p50"] = _ratio(public["latency"]["p50_ms"], fast["latency"]["p50_ms"])
        out[f"{mode}_engine_cpu"] = _ratio(
            public["cpu_us_per_transition"].get("engine"), fast["cpu_us_per_transition"].get("engine")
        )
    return out


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    server = h.server()
    rounds = max(1, min(o.rounds, o.runs, o.throughput_runs))
    sizes = {
        "sequential": (1, [o.runs // rounds + (i < o.runs % rounds) for i in range(rounds)]),
        "inflight": (o.inflight, [o.throughput_runs // rounds + (i < o.throughput_runs % rounds) for i in range(rounds)]),
    }
    parts: dict[str, dict[str, list[Round]]] = {mode: {p: [] for p in PATHS} for mode in sizes}
    failed: dict[str, dict[str, Any]] = {}
    for i in range(rounds):
        for path, value in PATHS.items():
            if path in failed:
                continue
            try:
                with _switch(value), ChainRig(h, server, uvloop=h.uvloop, limit=False) as rig:
                    for mode, (inflight, counts) in sizes.items():
                        label = f"(p) {path}, {'one at a time' if inflight == 1 else f'{inflight} in flight'}"
                        if rounds > 1:
                            label += f" round {i + 1}/{rounds}"
                        parts[mode][path].append(rig.jetloom_round(runs=counts[i], inflight=inflight, label=label))
            except Exception as exc:  # noqa: BLE001 - reported in the results
                failed[path] = failure(exc)
    results = {
        mode: {
            path: failed.get(path) or pool(parts[mode][path], sizes[mode][0], h.uvloop) for path in PATHS
        }
        for mode in sizes
    }
    return {"results": results, "ratios": ratios(results), "rounds": rounds}
