"""The 3-step chain measured on the three systems: shared by (a), (b), (g) and the uvloop variant.

``ChainRig`` starts one limit worker process and one jetloom worker process on a server and
measures either system with a closed loop of runs from the driver (this process); the peer runs in
a process of its own. Every measurement returns ``throughput_figures`` plus latency percentiles,
a CDF, and CPU seconds per process group: ``engine`` (the step worker processes; for the peer
the whole in-process run), ``server`` (nats-server) and ``driver`` (this process: starting runs
and waiting for their ends).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats
from nats.aio.msg import Msg

from engine import StartEvent
from engine.jetstream.log import JetStreamLog
from engine.model.records import RunCompleted, is_one_message_commit
from engine.runtime.inprocess import append_start
from engine.wire.headers import H_COMMIT, H_STEP
from engine.wire.subjects import run_subject
from services.nats_client import NatsClient
from services.natsserver import EmbeddedCluster, EmbeddedNats

from ..harness import Harness
from ..limit import LimitClient
from ..measure import CpuMeter, cdf_points, closed_loop, failure, run_loop, throughput_figures
from ..procs import Child, run_json, start_children
from ..workflows import CHAIN_RESULT, CHAIN_TEXT, CHAIN_TRANSITIONS, BenchChain

__all__ = ["ChainRig", "measure_peer_chain", "warmup_runs"]

JETLOOM_CHAIN = "benchmarks.workflows:BenchChain"
_END_DECODER = msgspec.json.Decoder(RunCompleted)
HOP_SAMPLE = 30  # runs whose logs are read for the per-step breakdown


@dataclass
class Round:
    """One measurement of one system: runs asked for and completed, wall seconds, CPU seconds by
    role, each completed run's latency in seconds, worker processes, and extra figures."""

    runs: int
    completed: int
    wall: float
    cpu: dict[str, float]
    latencies: list[float]
    processes: int
    extra: dict[str, Any] = field(default_factory=dict)


def warmup_runs(runs: int) -> int:
    """Unmeasured runs before a measurement: 10 % of it, 3 to 50."""
    return max(3, min(50, runs // 10))


def _uv(flag: bool) -> str:
    return "--uvloop" if flag else "--no-uvloop"


def jetloom_worker_args(target: str, url: str, uvloop: bool) -> list[str]:
    return ["jetloom", target, "--nats", url, _uv(uvloop)]


class ChainRig:
    """One limit worker (unless ``limit`` is false) and ``jetloom_workers`` jetloom workers of the
    chain on ``server`` (a server, or a cluster whose streams get ``replicas``; the limit needs a
    single server).

    Use as a context manager; the workers stop on exit.
    """

    def __init__(
        self,
        h: Harness,
        server: EmbeddedNats | EmbeddedCluster,
        *,
        uvloop: bool,
        jetloom_workers: int = 1,
        limit: bool = True,
        replicas: int = 1,
    ) -> None:
        self.h = h
        self.server = server
        # (a cluster: every node's URL, the client and workers pick one and move on failure)
        self.url = server.urls if isinstance(server, EmbeddedCluster) else server.url
        self.replicas = replicas
        self.uvloop = uvloop
        self.limit_workers: list[Child] = []
        self.jetloom_workers: list[Child] = []
        self._initial = jetloom_workers
        self._with_limit = limit

    def __enter__(self) -> ChainRig:
        if self._with_limit:
            self.add_limit_workers(1)
        self.add_jetloom_workers(self._initial)
        return self

    def add_limit_workers(self, n: int) -> None:
        args = ["limit", "--nats", self.server.url, _uv(self.uvloop)]
        self.limit_workers += start_children([args] * n, "limit worker ready")

    def add_jetloom_workers(
        self, n: int, *, prefix: str = "jetloom", env: dict[str, str] | None = None
    ) -> list[Child]:
        """Start ``n`` more jetloom workers (on the streams of ``prefix``, with ``env`` added to
        their environment); returns them (also kept in ``jetloom_workers``)."""
        args = jetloom_worker_args(JETLOOM_CHAIN, self.url, self.uvloop) + ["--replicas", str(self.replicas)]
        started = start_children([[*args, "--prefix", prefix]] * n, "jetloom worker ready", env)
        self.jetloom_workers += started
        return started

    def __exit__(self, *exc: object) -> None:
        for c in self.limit_workers + self.jetloom_workers:
            c.stop()

    def _meter(self, workers: list[Child]) -> CpuMeter:
        return CpuMeter(
            {
                "engine": [c.pid for c in workers],
                "server": [n.pid or 0 for n in self.server.nodes]
                if isinstance(self.server, EmbeddedCluster)
                else [self.server.pid or 0],
                "driver": [os.getpid()],
            }
        )

    def retain(self, n: int, label: str) -> None:
        """Add ``n`` finished runs to both chain streams, as streams that keep their runs hold
        them: two subjects per run that none of the chain's consumers reads (jetloom:
        ``sys.RunStarted`` and ``sys.RunCompleted`` of workflow ``BenchChain``, empty bodies; the
        limit: ``done`` and ``archived``). What grows is each stream's per-subject index, which
        nats-server 2.15 walks under a consumer's filters at every message-block roll for a
        consumer with several filters (``benchmarks/tried.md``)."""

        async def main() -> None:
            nc = await nats.connect(self.server.url)
            js = nc.jetstream()
            wf = BenchChain.workflow_name
            try:
                with self.h.task(label, n) as advance:
                    acks: list[Any] = []
                    for i in range(n):
                        run_id = f"kept{i:08d}{uuid.uuid4().hex[:8]}"
                        for subject in (
                            run_subject("jetloom", wf, run_id, "sys", "RunStarted"),
                            run_subject("jetloom", wf, run_id, "sys", "RunCompleted"),
                            f"limit.chain.{run_id}.done",
                            f"limit.chain.{run_id}.archived",
                        ):
                            acks.append(await js.publish_async(subject, b"{}"))
                        if len(acks) >= 4_000:
                            await asyncio.gather(*acks)
                            advance(len(acks) // 4)
                            acks = []
                    await asyncio.gather(*acks)
                    advance(len(acks) // 4)
            finally:
                await nc.close()

        run_loop(main, uvloop=self.uvloop)

    def limit(self, *, runs: int, inflight: int, label: str) -> dict[str, Any]:
        """The hand-written chain: ``runs`` runs, ``inflight`` at once."""
        return self.pool([self.limit_round(runs=runs, inflight=inflight, label=label)], inflight)

    def limit_round(self, *, runs: int, inflight: int, label: str) -> Round:
        """One measurement of the hand-written chain, unpooled."""
        meter = self._meter(self.limit_workers)
        tag = uuid.uuid4().hex[:8]

        async def main() -> Round:
            client = await LimitClient.connect(self.server.url)
            try:

                async def one(i: int) -> bool:
                    return await client.run_chain(f"{tag}{i}", CHAIN_TEXT) == CHAIN_RESULT

                async def warm(i: int) -> bool:
                    return await client.run_chain(f"{tag}w{i}", CHAIN_TEXT) == CHAIN_RESULT

                await closed_loop(warm, runs=warmup_runs(runs), inflight=inflight)
                with self.h.task(label, runs) as advance:
                    meter.start()
                    lat, done, wall = await closed_loop(
                        one, runs=runs, inflight=inflight, on_done=advance
                    )
                    cpu = meter.stop()
            finally:
                await client.close()
            return Round(runs, done, wall, cpu, lat, len(self.limit_workers))

        return run_loop(main, uvloop=self.uvloop)

    def jetloom(
        self, *, runs: int, inflight: int, label: str, hops: bool = False
    ) -> dict[str, Any]:
        """jetloom's chain through ``NatsClient.start`` + ``await handler``, as a user starts a
        run (the run id made by the client); with ``hops``, also where a run's time goes, read
        from the server timestamps in the last runs' logs."""
        return self.pool([self.jetloom_round(runs=runs, inflight=inflight, label=label, hops=hops)], inflight)

    def jetloom_round(
        self,
        *,
        runs: int,
        inflight: int,
        label: str,
        hops: bool = False,
        prefix: str = "jetloom",
        workers: list[Child] | None = None,
    ) -> Round:
        """One measurement of jetloom's chain, unpooled (``jetloom``): on the streams of
        ``prefix``, served by ``workers`` (default: all of ``jetloom_workers``)."""
        workers = self.jetloom_workers if workers is None else workers
        meter = self._meter(workers)

        async def main() -> Round:
            client = await NatsClient.connect(self.url, replicas=self.replicas, prefix=prefix)
            latency_of: dict[str, float] = {}
            try:

                async def one(i: int) -> bool:
                    t0 = time.perf_counter()
                    handler = await client.start(BenchChain, text=CHAIN_TEXT, timeout=120)
                    ok = await handler == CHAIN_RESULT
                    latency_of[handler.run_id] = time.perf_counter() - t0
                    return ok

                async def warm(i: int) -> bool:
                    handler = await client.start(BenchChain, text=CHAIN_TEXT, timeout=120)
                    return await handler == CHAIN_RESULT

                await closed_loop(warm, runs=warmup_runs(runs), inflight=inflight)
                with self.h.task(label, runs) as advance:
                    meter.start()
                    lat, done, wall = await closed_loop(
                        one, runs=runs, inflight=inflight, on_done=advance
                    )
                    cpu = meter.stop()
                out = Round(runs, done, wall, cpu, lat, len(workers))
                if hops:
                    out.extra["breakdown"] = await hop_breakdown(client, latency_of, runs)
            finally:
                await client.close()
            return out

        return run_loop(main, uvloop=self.uvloop)

    def pool(self, rounds: list[Round], inflight: int) -> dict[str, Any]:
        """``pool`` with this rig's event loop setting."""
        return pool(rounds, inflight, self.uvloop)

    def alternate(
        self, *, runs: int, inflight: int, label: str, rounds: int, hops: bool = False, peer: bool = False
    ) -> dict[str, dict[str, Any]]:
        """limit, (the peer,) and jetloom measured in ``rounds`` alternating rounds (limit, peer,
        jetloom, limit, ...) of ``runs / rounds`` runs each, and pooled (``pool``): this machine's
        speed drifts by up to 2x within minutes (steal time), and figures taken minutes apart
        compared that drift, not the systems. ``{"limit": figures, ("peer": ...,) "jetloom":
        figures}``; a system whose round raised gets ``{"error": ...}`` (``measure.failure``), the
        others are still measured. ``hops``: jetloom's last round also reads where its time went."""
        rounds = max(1, min(rounds, runs))
        sizes = [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]
        calls: dict[str, Callable[[int, str, bool], Round]] = {
            "limit": lambda n, tag, last: self.limit_round(runs=n, inflight=inflight, label=tag),
        }
        if peer:
            calls["peer"] = lambda n, tag, last: peer_chain_round(
                self.h, runs=n, inflight=inflight, uvloop=self.uvloop, label=tag
            )
        calls["jetloom"] = lambda n, tag, last: self.jetloom_round(
            runs=n, inflight=inflight, label=tag, hops=hops and last
        )
        parts: dict[str, list[Round]] = {name: [] for name in calls}
        failed: dict[str, dict[str, Any]] = {}
        for i, n in enumerate(sizes):
            tag = f"{label} round {i + 1}/{rounds}" if rounds > 1 else label
            for name, call in calls.items():
                if name in failed:
                    continue
                try:
                    parts[name].append(call(n, f"{tag} {name}", i == len(sizes) - 1))
                except Exception as exc:  # noqa: BLE001 - reported in the results
                    failed[name] = failure(exc)
        return {name: failed.get(name) or self.pool(parts[name], inflight) for name in parts}

    def jetloom_lean(self, *, runs: int, inflight: int, label: str) -> dict[str, Any]:
        """jetloom's chain with a lean driver: each run is started with ``append_start`` (its start
        commit) and its end is seen on one core subscription to
        ``jetloom.run.BenchChain.*.sys.RunCompleted`` for all runs, instead of one handler per
        run (following the run's ``sys`` records through the workflow's shared follow consumer
        into an end projection). Isolates the workers' throughput from what a handler costs the
        client."""
        meter = self._meter(self.jetloom_workers)
        tag = uuid.uuid4().hex[:8]
        wf = BenchChain.workflow_name

        async def main() -> dict[str, Any]:
            log = await JetStreamLog.connect(self.server.url)
            waiting: dict[str, asyncio.Future[Any]] = {}

            async def on_end(msg: Msg) -> None:
                fut = waiting.pop(msg.subject.split(".")[3], None)
                if fut is not None and not fut.done():
                    fut.set_result(_END_DECODER.decode(msg.data).event.get("result"))

            try:
                for spec in BenchChain.steps.values():
                    await log.ensure_consumer(wf, spec.name, spec.accepts_names, update=False)
                await log.nc.subscribe(f"{log.prefix}.run.{wf}.*.sys.RunCompleted", cb=on_end)

                async def run(rid: str) -> bool:
                    fut = waiting[rid] = asyncio.get_running_loop().create_future()
                    # (fresh: the id is this driver's own, so the start commit goes out as a
                    # handler's does, and the first step folds it without a read)
                    await append_start(log, wf, rid, StartEvent(text=CHAIN_TEXT), fresh=True)
                    async with asyncio.timeout(120):
                        return await fut == CHAIN_RESULT

                await closed_loop(
                    lambda i: run(f"{tag}-w{i}"), runs=warmup_runs(runs), inflight=inflight
                )
                with self.h.task(label, runs) as advance:
                    meter.start()
                    lat, done, wall = await closed_loop(
                        lambda i: run(f"{tag}-{i}"), runs=runs, inflight=inflight, on_done=advance
                    )
                    cpu = meter.stop()
            finally:
                await log.close()
            out = _figures(
                runs, done, wall, cpu, lat, inflight, len(self.jetloom_workers), self.uvloop
            )
            out["note"] = "lean driver: start commit + one subscription for every run's end"
            return out

        return run_loop(main, uvloop=self.uvloop)


async def hop_breakdown(
    client: NatsClient, latency_of: dict[str, float], runs: int
) -> dict[str, Any]:
    """Where one run's time goes, from the stored records of the last ``HOP_SAMPLE`` runs.

    Server timestamps give, per step, the time from the commit that stored its trigger to the
    commit of the step itself (delivery, reading the run's log, running the step, the atomic
    commit). What is left of the driver's latency is the client's part: appending the start commit
    and learning of the end through the workflow's ``sys`` follow consumer.

    Returns medians in ms: ``{"steps_ms": {step: ms}, "server_span_ms", "client_ms", "runs"}``.
    """
    wf = BenchChain.workflow_name
    steps: dict[str, list[float]] = {}
    spans: list[float] = []
    client_part: list[float] = []
    for rid in list(latency_of)[-min(HOP_SAMPLE, runs) :]:
        raws = await client.log.read(wf, rid)
        if not raws:
            continue
        prev = raws[0].time_ns
        for raw in raws:
            kind, type_name = raw.subject.rsplit(".", 2)[1:]
            step_commit = raw.subject.endswith(".sys.StepCompleted") or is_one_message_commit(
                kind, type_name, raw.headers.get(H_COMMIT), raw.headers.get(H_STEP)
            )
            if step_commit:  # the record by which the step's commit completed it
                step = raw.headers.get(H_STEP, "?")
                steps.setdefault(step, []).append((raw.time_ns - prev) / 1e6)
                prev = raw.time_ns
        span = (raws[-1].time_ns - raws[0].time_ns) / 1e6
        spans.append(span)
        client_part.append(latency_of[rid] * 1e3 - span)
    med = statistics.median
    return {
        "runs": len(spans),
        "steps_ms": {s: med(v) for s, v in steps.items()},
        "server_span_ms": med(spans) if spans else None,
        "client_ms": med(client_part) if client_part else None,
    }


def _figures(
    runs: int,
    completed: int,
    wall: float,
    cpu: dict[str, float],
    lat: list[float],
    inflight: int,
    processes: int,
    uvloop: bool,
) -> dict[str, Any]:
    out = throughput_figures(
        runs=runs,
        completed=completed,
        transitions_per_run=CHAIN_TRANSITIONS,
        wall_s=wall,
        cpu_s=cpu,
        latencies_s=lat,
    )
    out.update(inflight=inflight, processes=processes, uvloop=uvloop, cdf_ms=cdf_points(lat))
    return out


def measure_peer_chain(
    h: Harness, *, runs: int, inflight: int, uvloop: bool, label: str
) -> dict[str, Any]:
    """llama-index-workflows' chain in its own process (no server, no durability)."""
    return pool([peer_chain_round(h, runs=runs, inflight=inflight, uvloop=uvloop, label=label)], inflight, uvloop)


def peer_chain_round(h: Harness, *, runs: int, inflight: int, uvloop: bool, label: str) -> Round:
    """One measurement of the peer's chain, unpooled (``measure_peer_chain``)."""
    with h.task(label, runs) as advance:
        res = run_json(
            [
                "peer-chain",
                str(runs),
                str(inflight),
                "--warmup",
                str(warmup_runs(runs)),
                _uv(uvloop),
            ]
        )
        advance(runs)
    note = "in-process: engine and driver are one process; no server"
    return Round(runs, res["completed"], res["wall_s"], {"engine": res["cpu_s"]}, res["latencies_s"], 1, {"note": note})


def pool(rounds: list[Round], inflight: int, uvloop: bool) -> dict[str, Any]:
    """The figures of ``rounds`` of one system taken together: their runs, wall times and CPU
    seconds summed, their latencies as one sample; ``rounds`` says how many there were and
    ``per_round`` holds each round's own figures (``round_summary``), in order, so that a target
    can take the median of per-round ratios between systems measured in alternation."""
    cpu: dict[str, float] = {}
    for r in rounds:
        for k, v in r.cpu.items():
            cpu[k] = cpu.get(k, 0.0) + v
    lat = [x for r in rounds for x in r.latencies]
    out = _figures(
        sum(r.runs for r in rounds), sum(r.completed for r in rounds), sum(r.wall for r in rounds),
        cpu, lat, inflight, rounds[-1].processes, uvloop,
    )  # fmt: skip
    for r in rounds:
        out.update(r.extra)
    out["rounds"] = len(rounds)
    out["per_round"] = [round_summary(r) for r in rounds]
    return out


def round_summary(r: Round) -> dict[str, Any]:
    """The figures of one round that per-round ratios are taken of (``benchmarks.targets``):
    ``p50_ms``, ``runs_per_s``, ``transitions_per_s``, ``cpu_us_per_transition`` by group."""
    f = throughput_figures(
        runs=r.runs, completed=r.completed, transitions_per_run=CHAIN_TRANSITIONS, wall_s=r.wall,
        cpu_s=r.cpu, latencies_s=r.latencies,
    )  # fmt: skip
    return {
        "p50_ms": f["latency"].get("p50_ms"),
        "runs_per_s": f["runs_per_s"],
        "transitions_per_s": f["transitions_per_s"],
        "cpu_us_per_transition": f["cpu_us_per_transition"],
    }
