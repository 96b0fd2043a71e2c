"""The step worker process: ``jetloom worker MODULE:WorkflowClass --nats URL``.

Each worker process runs an ``Executor`` for one workflow on a ``NatsBackend``'s log: one durable pull
consumer per step, shared with every other replica, so JetStream spreads triggers across
processes and a dead process's unacked triggers are redelivered to the living ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine.jetstream.backend import NatsBackend
from engine.jetstream.connection import NatsSettings
from engine.jetstream.log import DEFAULT_ACK_WAIT, check_lease
from engine.ports.registry import RegistryView
from engine.runtime.affinity import RunAffinity
from engine.runtime.describe import describe
from engine.runtime.executor import Executor
from engine.state.snapshots import DEFAULT_SNAPSHOT_EVERY

from .heap import settle_heap
from .loading import load_workflow
from .registry import DEFAULT_TTL, Heartbeat

if TYPE_CHECKING:
    from .metrics import MetricsServer, WorkerMetrics

__all__ = ["serve"]

logger = logging.getLogger("jetloom.worker")

#: Seconds between two reads of the step consumers' backlog for the metrics.
BACKLOG_INTERVAL = 5.0


async def serve(
    target: str,
    nats: str | NatsSettings,
    *,
    steps: Sequence[str] | None = None,
    prefix: str = "jetloom",
    ack_wait: timedelta = DEFAULT_ACK_WAIT,
    progress_heartbeat: timedelta | None = None,
    stop: asyncio.Event | None = None,
    grace: float = 10.0,
    service: str | None = None,
    registry_ttl: float = DEFAULT_TTL,
    num_workers: int | None = None,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    backlog_interval: float = BACKLOG_INTERVAL,
    affinity: bool = True,
) -> None:
    """Run step workers for ``target`` until ``stop`` is set (or SIGINT/SIGTERM).

    Args:
        target: ``module:WorkflowClass`` (or an instance or factory).
        nats: the NATS server URL(s), e.g. ``nats://127.0.0.1:4222``, or ``NatsSettings``
            (credentials, and the replicas of the streams and buckets it creates).
        steps: run only these steps (default: all).
        prefix: subject prefix (default ``jetloom``).
        ack_wait: redelivery deadline of an unsettled trigger (default 6 s): a killed worker's
            steps run again in another process this long after its last in-progress ack. Set
            on the step consumers at start (an existing consumer's is updated, and logged).
        progress_heartbeat: how often a held trigger's lease is renewed with an in-progress ack
            (default: 2 s, or a third of ``ack_wait`` when that is shorter); shorter than
            ``ack_wait``.
        grace: seconds in-flight steps get to finish on shutdown (default 10).
        service: the name this process registers under (default: the workflow's name).
        registry_ttl: seconds the registry entry outlives this process's last heartbeat
            (default 10; heartbeats every third of it).
        num_workers: concurrent triggers per step, overriding the steps' own ``num_workers``.
        snapshot_every: records a run folds between two snapshots in the KV bucket
            ``<prefix>_snapshots`` (default 1,000).
        metrics_port: serve Prometheus metrics at ``http://<metrics_host>:<port>/metrics``
            (``services.metrics.WorkerMetrics``); 0 picks a free port. The port is printed on
            the ready line (``metrics=<host>:<port>``) and kept in the registry entry
            (``metrics_port``). Default ``None``: no metrics, and the executor reports nothing.
        metrics_host: the address the metrics server binds (default ``127.0.0.1``; ``0.0.0.0``
            for a scraper on another host).
        backlog_interval: seconds between two reads of the step consumers' backlog for the
            ``jetloom_consumer_*`` gauges (default 5).
        affinity: run affinity (default on; ``engine.runtime.affinity``): the first delivery of
            a run is handed over (on ``<prefix>.handoff.>``) to the live worker that owns the
            run by rendezvous hashing over the registry's members, so one process runs a run's
            steps and finds it in its run cache; a redelivery or a part of a fan-out is handled
            where it lands. ``False``: every delivery is handled where it lands.

    Prints one line ``jetloom worker ready pid=<pid> workflow=<name> steps=<a,b> service=<s> instance=<id>``
    (then `` metrics=<host>:<port>`` when serving metrics) once consuming,
    and ``jetloom worker stopped pid=<pid> stats=<ExecutorStats> snapshots_loaded=<n>
    snapshots_written=<n> records_read=<n> handoffs=<out>/<in> handoffs_returned=<n>`` (the run
    cache's counters; the deliveries handed to other processes and taken from them, and those
    handed to a process that was gone) when it stops.

    Raises:
        ValueError: ``progress_heartbeat`` is not shorter than ``ack_wait`` (checked before
            connecting).
        OSError: the metrics port cannot be bound (checked before connecting).
        engine.jetstream.connection.NatsConnectError: NATS unreachable at start-up, or it refused the
            credentials.
        engine.jetstream.connection.NatsConnectionClosed: nats-py closed the connection for good (a
            server ``-ERR``, expired credentials). The process should exit non-zero so that its
            supervisor restarts it: its unacked triggers are redelivered meanwhile.
    """
    progress_heartbeat = timedelta(
        seconds=check_lease(
            ack_wait.total_seconds(),
            None if progress_heartbeat is None else progress_heartbeat.total_seconds(),
        )
    )
    workflow = load_workflow(target)
    metrics: WorkerMetrics | None = None
    server: MetricsServer | None = None
    if metrics_port is not None:
        # (prometheus-client: only a worker that serves metrics loads it)
        from .metrics import WorkerMetrics

        metrics = WorkerMetrics()
        server = metrics.serve_http(metrics_port, metrics_host)
    try:
        backend = await NatsBackend.connect(
            nats,
            name="jetloom-worker",
            prefix=prefix,
            ack_wait=ack_wait,
            progress_heartbeat=progress_heartbeat,
        )
    except BaseException:
        if server is not None:
            server.stop()
        raise
    executor = Executor(
        workflow,
        backend.log,
        steps=steps,
        num_workers=num_workers,
        snapshots=await backend.snapshots(),
        snapshot_every=snapshot_every,
        observer=metrics,
    )
    registry = await backend.registry()
    heartbeat = Heartbeat(
        registry,
        service=service or type(workflow).workflow_name,
        workflows=[describe(type(workflow))],
        ttl=registry_ttl,
        stats=lambda: dataclasses.asdict(executor.stats),
    )
    view: RegistryView | None = None
    if affinity:
        # (the members come from the registry; this process names itself one, with the steps it
        # takes hand-offs for, once its hand-off inbox is subscribed)
        view = await registry.view()
        executor.affinity = RunAffinity(view, executor.name, heartbeat.entry.instance)
        await backend.log.open_handoffs(heartbeat.entry.instance)
        heartbeat.entry.handoff_steps = [s.name for s in executor.specs]
    poller: asyncio.Task[None] | None = None
    if metrics is not None and server is not None:
        from .metrics import BacklogRow

        metrics.watch(executor.name, executor.stats)
        heartbeat.entry.metrics_port = server.port
        specs = [(s.name, s.accepts_names) for s in executor.specs]
        log = backend.log

        async def backlog() -> list[BacklogRow]:
            rows = []
            for step, accepts in specs:
                for consumer, pending, ack_pending in await log.backlog(executor.name, step, accepts):
                    rows.append(BacklogRow(executor.name, step, consumer, pending, ack_pending))
            return rows
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await executor.start()
        await heartbeat.start()
        if metrics is not None:
            poller = asyncio.create_task(metrics.poll_backlog(backlog, backlog_interval), name="jetloom:backlog")
        settle_heap()
        names = ",".join(s.name for s in executor.specs)
        shown = f" metrics={metrics_host}:{server.port}" if server is not None else ""
        print(
            f"jetloom worker ready pid={os.getpid()} workflow={type(workflow).workflow_name} "
            f"steps={names} service={heartbeat.entry.service} instance={heartbeat.entry.instance}{shown}",
            flush=True,
        )
        lost = await _until_stopped(stop, backend.closed())
    finally:
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        await heartbeat.stop()
        await executor.stop(grace=grace)
        if view is not None:
            await view.stop()
        logger.info("worker stopping: %s", executor.stats)
        runs, consumers = executor.runs, backend.log.consumers
        print(
            f"jetloom worker stopped pid={os.getpid()} stats={executor.stats} "
            f"snapshots_loaded={runs.snapshots_loaded} snapshots_written={runs.snapshots_written} "
            f"records_read={runs.records_read} handoffs={consumers.handed_over}/{consumers.taken_over} "
            f"handoffs_returned={consumers.handoffs_returned}",
            flush=True,
        )
        await backend.close()
        if server is not None:
            server.stop()
    if lost is not None:
        raise lost


async def _until_stopped(stop: asyncio.Event, closed: asyncio.Future[Exception]) -> Exception | None:
    """Wait for ``stop`` or for nats-py to close the connection for good (returned then: a
    worker does not rebuild its connection, whose consumers and in-flight steps went with it;
    it exits and its supervisor starts a clean one)."""
    stopping = asyncio.create_task(stop.wait())
    try:
        waiting: set[asyncio.Future[Any]] = {stopping, closed}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if closed.done() and not stop.is_set():
        return closed.result()
    return None
