"""(h) The HTTP path: the chain started and awaited through the control plane
(``POST /workflows/BenchChain/runs?wait=true``, one request per run) against the same through
``NatsClient`` (``start`` + ``await handler``, the baseline), in alternating rounds: one run at a
time (p50) and ``inflight`` at once (runs/s).

The control plane is the ``jetloom control-plane`` command in a process of its own (its CPU is
the ``control`` group), beside one jetloom worker process (``engine``) and nats-server
(``server``). The HTTP driver is this process: aiohttp with one keep-alive connection per run in
flight, bodies decoded with orjson; its CPU (``driver``) is measured apart and reported as the
share of one core it kept busy, so a driver that was the bottleneck shows (``driver_busy``
near 1).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from services.supervisor import ChildProcess, python_env

from ..harness import Harness
from ..measure import CpuMeter, closed_loop, failure, run_loop
from ..procs import ROOT, STOP_TIMEOUT_S
from ..workflows import CHAIN_RESULT, CHAIN_TEXT, BenchChain
from .chain import ChainRig, Round, pool, warmup_runs

__all__ = ["ControlPlaneChild", "chain_poster", "http_round", "run"]

TITLE = "3-step chain through the HTTP API (?wait=true) against NatsClient"
READY = "jetloom control plane ready"


class ControlPlaneChild(ChildProcess):
    """``jetloom control-plane --nats URL --port 0`` as a user runs it (uvloop and httptools
    where installed, no access log), started and waited for; ``url`` is the API's.

    Raises:
        RuntimeError: it exited or was not ready within 60 s; with its output.
    """

    def __init__(self, nats_url: str, *extra: str) -> None:
        argv = [sys.executable, "-m", "services.cli", "control-plane", "--nats", nats_url, "--port", "0", *extra]
        super().__init__(argv, env=python_env(ROOT), cwd=ROOT, ready=READY)
        self.start()
        line = self.wait_ready(60.0)
        self.url = line.split("api=", 1)[1].split()[0]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:  # noqa: ASYNC109
        return super().stop(timeout)


@contextlib.asynccontextmanager
async def chain_poster(control: ControlPlaneChild, inflight: int) -> AsyncIterator[Callable[[int], Awaitable[bool]]]:
    """``one(i)``: start a chain run through ``POST /workflows/BenchChain/runs?wait=true`` and
    return whether the answer was 200 with the chain's result; over an aiohttp session with up to
    ``inflight`` keep-alive connections (closed on exit)."""
    url = f"{control.url}/workflows/{BenchChain.workflow_name}/runs?wait=true&timeout=120"
    body = orjson.dumps({"text": CHAIN_TEXT})
    headers = {"Content-Type": "application/json"}
    conn = aiohttp.TCPConnector(limit=inflight, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=conn, skip_auto_headers=("User-Agent",)) as session:

        async def one(i: int) -> bool:
            async with session.post(url, data=body, headers=headers) as resp:
                data = await resp.read()
                return resp.status == 200 and orjson.loads(data).get("result") == CHAIN_RESULT

        yield one


def _meter(rig: ChainRig, control: ControlPlaneChild | None) -> CpuMeter:
    groups = {
        "engine": [c.pid for c in rig.jetloom_workers],
        "server": [rig.server.pid or 0],  # type: ignore[union-attr]  # (one node here)
        "driver": [os.getpid()],
    }
    if control is not None:
        groups["control"] = [control.pid]
    return CpuMeter(groups)


def http_round(
    h: Harness, rig: ChainRig, control: ControlPlaneChild, *, runs: int, inflight: int, label: str
) -> Round:
    """``runs`` runs of the chain through ``POST /workflows/BenchChain/runs?wait=true``,
    ``inflight`` at once (after unmeasured warm-up runs); a run counts as completed when the
    answer is 200 with the chain's result."""
    meter = _meter(rig, control)

    async def main() -> Round:
        async with chain_poster(control, inflight) as one:
            await closed_loop(one, runs=warmup_runs(runs), inflight=inflight)
            with h.task(label, runs) as advance:
                meter.start()
                lat, done, wall = await closed_loop(one, runs=runs, inflight=inflight, on_done=advance)
                cpu = meter.stop()
        return Round(runs, done, wall, cpu, lat, len(rig.jetloom_workers))

    return run_loop(main, uvloop=rig.uvloop)


def _alternate(
    h: Harness, rig: ChainRig, control: ControlPlaneChild, *, runs: int, inflight: int, label: str
) -> dict[str, dict[str, Any]]:
    """HTTP and NatsClient in ``h.options.rounds`` alternating rounds (HTTP first), pooled
    (``chain.pool``: each keeps its ``per_round`` figures)."""
    rounds = max(1, min(h.options.rounds, runs))
    sizes = [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]
    parts: dict[str, list[Round]] = {"http": [], "client": []}
    failed: dict[str, dict[str, Any]] = {}
    for i, n in enumerate(sizes):
        tag = f"{label} round {i + 1}/{rounds}" if rounds > 1 else label
        for name in parts:
            if name in failed:
                continue
            try:
                if name == "http":
                    parts[name].append(http_round(h, rig, control, runs=n, inflight=inflight, label=f"{tag} HTTP"))
                else:
                    parts[name].append(rig.jetloom_round(runs=n, inflight=inflight, label=f"{tag} NatsClient"))
            except Exception as exc:  # noqa: BLE001 - reported in the results
                failed[name] = failure(exc)
    out: dict[str, dict[str, Any]] = {}
    for name, got in parts.items():
        if name in failed or not got:
            out[name] = failed.get(name) or {"error": "not measured"}
            continue
        figures = pool(got, inflight, rig.uvloop)
        busy = figures["cpu_s"].get("driver", 0.0) / figures["wall_s"] if figures["wall_s"] else None
        figures["driver_busy"] = busy  # share of one core the driver process kept busy
        figures["cpu_ms_per_run"] = {
            g: (v / figures["completed"] * 1e3 if figures["completed"] else None) for g, v in figures["cpu_s"].items()
        }
        out[name] = figures
    return out


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    with ChainRig(h, h.server(), uvloop=h.uvloop, limit=False) as rig:
        control = ControlPlaneChild(rig.url)
        try:
            sequential = _alternate(h, rig, control, runs=o.runs, inflight=1, label="(h) one at a time")
            inflight = _alternate(
                h, rig, control, runs=o.throughput_runs, inflight=o.inflight, label=f"(h) {o.inflight} in flight"
            )
        finally:
            control.stop()
    return {
        "inflight": o.inflight,
        "control_plane": "jetloom control-plane (uvicorn, one process)",
        "driver": f"aiohttp {aiohttp.__version__}, one keep-alive connection per run in flight",
        "results": {"sequential": sequential, "inflight": inflight},
    }
