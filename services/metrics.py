"""Prometheus metrics of jetloom's processes, with prometheus-client.

Each process keeps its own ``CollectorRegistry`` (never the library's global default), so that
tests starting several workers or control planes in one process see each one's own figures.

- ``WorkerMetrics``: a step worker's. It is the ``ExecutorObserver`` (``engine.runtime.telemetry``)
  of the worker's executor, for what needs a step label or a measured time; the executor's
  ``ExecutorStats`` counters are read at scrape time by a custom collector (nothing on the hot
  path); the step consumers' backlog is read from NATS every few seconds by ``poll_backlog`` and
  a scrape returns the last values read (a scrape never waits on NATS). ``serve_http`` exposes it
  on its own port (prometheus-client's threaded HTTP server).
- ``ControlPlaneMetrics``: the control plane's: HTTP requests by route template and status,
  their durations, runs it started and cancelled, Server-Sent-Event streams open. Its ASGI
  middleware (``middleware``) measures requests; ``services.control.routes.metrics`` serves it at
  ``GET /metrics``.

Every metric, its type, its labels and its meaning: docs/operations.md, "Metrics". Names follow
Prometheus' conventions: prefix ``jetloom_``, counters end in ``_total``, times in seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.runtime.executor import ExecutorStats
from engine.runtime.telemetry import COMPLETED, FAILED, SUSPENDED

__all__ = [
    "COMMIT_BUCKETS",
    "RUN_BUCKETS",
    "STATS_METRICS",
    "STEP_BUCKETS",
    "BacklogRow",
    "ControlPlaneMetrics",
    "MetricsServer",
    "WorkerMetrics",
]

logger = logging.getLogger("jetloom.metrics")

#: Buckets (seconds) of ``jetloom_step_duration_seconds``: from a millisecond to five minutes.
STEP_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Buckets (seconds) of ``jetloom_commit_latency_seconds``: a commit is a few round trips to NATS.
COMMIT_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
#: Buckets (seconds) of ``jetloom_run_duration_seconds``: runs last from milliseconds to a day.
RUN_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
#: Buckets (seconds) of ``jetloom_http_request_duration_seconds``.
HTTP_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

#: ``ExecutorStats`` field -> (counter name without ``_total``, help), read at scrape time.
STATS_METRICS: Final = {
    "redelivered": ("jetloom_redeliveries", "Deliveries of a message the step consumer had delivered before."),
    "dead_lettered": ("jetloom_dead_letters", "Messages moved to the dead-letter subject."),
    "skipped": (
        "jetloom_triggers_skipped",
        "Triggers acknowledged without running their step (run ended, already handled, other target).",
    ),
    "duplicates": ("jetloom_commits_duplicate", "Commits the log dropped as duplicates of another execution's."),
    "retried": ("jetloom_deliveries_nacked", "Deliveries given back (nak) after an infrastructure error, to be redelivered."),
    "repaired": ("jetloom_commit_messages_repaired", "Messages of interrupted commits appended again from their copy."),
    "resumed": ("jetloom_steps_resumed", "Resume commands handled: a wait ended and its step ran again."),
    "cancelled": (
        "jetloom_steps_cancelled",
        "Step executions stopped, or commits dropped, because their run had ended.",
    ),
}


@dataclass(frozen=True)
class BacklogRow:
    """One step consumer's backlog, as its consumer info last gave it.

    Attributes:
        workflow / step: whose consumer it is.
        consumer: the durable consumer's name.
        pending: messages it has still to deliver.
        ack_pending: messages delivered and not yet acknowledged.
    """

    workflow: str
    step: str
    consumer: str
    pending: int
    ack_pending: int


class _StatsCollector(Collector):
    """Exposes the ``ExecutorStats`` of the watched executors, labelled by workflow."""

    def __init__(self) -> None:
        self.executors: list[tuple[str, ExecutorStats]] = []

    def collect(self) -> Iterable[Metric]:
        known = {f.name for f in fields(ExecutorStats)}
        for field, (name, help_) in STATS_METRICS.items():
            if field not in known:  # (a renamed counter must not break the scrape)
                continue
            family = CounterMetricFamily(name, help_, labels=("workflow",))
            for workflow, stats in list(self.executors):
                family.add_metric((workflow,), getattr(stats, field))
            yield family


class _BacklogCollector(Collector):
    """Exposes the last backlog read (never reads NATS itself)."""

    def __init__(self) -> None:
        self.rows: tuple[BacklogRow, ...] = ()
        self.read_at: float | None = None  # time.time() of the last successful read

    def collect(self) -> Iterable[Metric]:
        labels = ("workflow", "step", "consumer")
        pending = GaugeMetricFamily(
            "jetloom_consumer_pending", "Messages a step consumer has still to deliver (last read).", labels=labels
        )
        ack_pending = GaugeMetricFamily(
            "jetloom_consumer_ack_pending",
            "Messages a step consumer delivered that are not yet acknowledged (last read).",
            labels=labels,
        )
        rows = self.rows  # (replaced whole by the poller: a consistent set)
        for r in rows:
            pending.add_metric((r.workflow, r.step, r.consumer), r.pending)
            ack_pending.add_metric((r.workflow, r.step, r.consumer), r.ack_pending)
        yield pending
        yield ack_pending
        if self.read_at is not None:
            yield GaugeMetricFamily(
                "jetloom_consumer_backlog_read_timestamp_seconds",
                "When the consumers' backlog was last read (Unix time).",
                value=self.read_at,
            )


class _StepMetrics:
    """One (workflow, step)'s counts (plain ints, bumped on the executor's loop and read by a
    scrape: no lock on the hot path) and its histogram children, looked up once."""

    __slots__ = ("cancelled", "commit", "completed", "durations", "failed", "retried", "started", "suspended")

    def __init__(self, m: WorkerMetrics, workflow: str, step: str) -> None:
        self.started = self.completed = self.failed = self.suspended = self.cancelled = self.retried = 0
        self.commit = m.commit_latency.labels(workflow, step)
        self.durations: dict[str, Any] = {}

    @property
    def in_flight(self) -> int:
        return self.started - self.completed - self.failed - self.suspended - self.cancelled


#: ``_StepMetrics`` attribute -> (counter name without ``_total``, help).
_STEP_COUNTERS: Final = {
    "started": ("jetloom_steps_started", "Step executions started."),
    "completed": ("jetloom_steps_completed", "Step executions that returned (their commit follows)."),
    "failed": ("jetloom_steps_failed", "Step executions that raised (each failed attempt)."),
    "suspended": ("jetloom_steps_suspended", "Step executions that stopped to wait (event, timer, child run)."),
    "retried": ("jetloom_steps_retried", "Failed attempts followed by another one (StepRetrying recorded)."),
}


class _StepCollector(Collector):
    """Exposes the per-step counts and the steps in flight."""

    def __init__(self, steps: dict[tuple[str, str], _StepMetrics]) -> None:
        self.steps = steps

    def collect(self) -> Iterable[Metric]:
        steps = list(self.steps.items())  # (one C call: safe while the loop adds steps)
        labels = ("workflow", "step")
        for attr, (name, help_) in _STEP_COUNTERS.items():
            family = CounterMetricFamily(name, help_, labels=labels)
            for key, m in steps:
                family.add_metric(key, getattr(m, attr))
            yield family
        gauge = GaugeMetricFamily("jetloom_steps_in_flight", "Step executions running now.", labels=labels)
        for key, m in steps:
            gauge.add_metric(key, m.in_flight)
        yield gauge


class WorkerMetrics:
    """A step worker's metrics; an ``engine.runtime.telemetry.ExecutorObserver``.

    Args:
        registry: where the metrics are registered (default: a new ``CollectorRegistry`` of
            its own).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        step = ("workflow", "step")
        self.step_duration = Histogram(
            "jetloom_step_duration_seconds",
            "Time of a step execution (the call and the building of its commit), by outcome.",
            (*step, "outcome"),
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            "jetloom_commit_latency_seconds",
            "Time from a step's return to its commit acknowledged by the log.",
            step,
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.runs_completed = Counter(
            "jetloom_runs_completed", "Runs this process ended with RunCompleted.", ("workflow",), registry=r
        )
        self.runs_failed = Counter(
            "jetloom_runs_failed", "Runs this process ended failed (a step's failure).", ("workflow",), registry=r
        )
        self.run_duration = Histogram(
            "jetloom_run_duration_seconds",
            "End-to-end time of a run, from RunStarted to the end record this process appended.",
            ("workflow", "status"),
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self._steps: dict[tuple[str, str], _StepMetrics] = {}
        self._stats = _StatsCollector()
        self._backlog = _BacklogCollector()
        r.register(_StepCollector(self._steps))
        r.register(self._stats)
        r.register(self._backlog)

    # ---- what the worker tells it ----------------------------------------------------------

    def watch(self, workflow: str, stats: ExecutorStats) -> None:
        """Expose an executor's counters (``STATS_METRICS``), labelled ``workflow``."""
        self._stats.executors.append((workflow, stats))

    def set_backlog(self, rows: Sequence[BacklogRow]) -> None:
        """Replace the consumers' backlog a scrape shows."""
        self._backlog.rows = tuple(rows)
        self._backlog.read_at = time.time()

    async def poll_backlog(self, read: Callable[[], Awaitable[Sequence[BacklogRow]]], interval: float) -> None:
        """Read the backlog with ``read`` every ``interval`` seconds, forever (run it as a task).
        A failed read is logged and leaves the last values in place."""
        while True:
            try:
                self.set_backlog(await read())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("reading the step consumers' backlog failed: %s", exc)
            await asyncio.sleep(interval)

    # ---- ExecutorObserver --------------------------------------------------------------------

    def _step(self, workflow: str, step: str) -> _StepMetrics:
        m = self._steps.get((workflow, step))
        if m is None:
            m = self._steps[(workflow, step)] = _StepMetrics(self, workflow, step)
        return m

    def step_started(self, workflow: str, step: str) -> None:
        self._step(workflow, step).started += 1

    def step_ended(self, workflow: str, step: str, outcome: str, seconds: float) -> None:
        m = self._step(workflow, step)
        if outcome == COMPLETED:
            m.completed += 1
        elif outcome == FAILED:
            m.failed += 1
        elif outcome == SUSPENDED:
            m.suspended += 1
        else:
            m.cancelled += 1
        hist = m.durations.get(outcome)
        if hist is None:
            hist = m.durations[outcome] = self.step_duration.labels(workflow, step, outcome)
        hist.observe(seconds)

    def step_retrying(self, workflow: str, step: str) -> None:
        self._step(workflow, step).retried += 1

    def committed(self, workflow: str, step: str, seconds: float) -> None:
        self._step(workflow, step).commit.observe(seconds)

    def run_ended(self, workflow: str, status: str, seconds: float | None) -> None:
        (self.runs_completed if status == COMPLETED else self.runs_failed).labels(workflow).inc()
        if seconds is not None:
            self.run_duration.labels(workflow, status).observe(max(seconds, 0.0))

    # ---- exposition ------------------------------------------------------------------------

    def serve_http(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve the Prometheus text format at ``http://host:port/metrics`` (any path answers)
        from a daemon thread (prometheus-client's ``start_http_server``); ``port`` 0 picks a
        free port (``MetricsServer.port``).

        Raises:
            OSError: the address cannot be bound (e.g. the port is taken).
        """
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


class MetricsServer:
    """A running metrics HTTP server (``WorkerMetrics.serve_http``)."""

    def __init__(self, server: WSGIServer, thread: Any) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server.server_port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ---- control plane -------------------------------------------------------------------------

#: Runs the control plane starts: ``(method, route template)`` -> the path parameter naming the
#: workflow.
_STARTS: Final = {("POST", "/workflows/{name}/runs"): "name"}
_CANCELS: Final = {("POST", "/runs/{run_id}/cancel")}


class ControlPlaneMetrics:
    """The control plane's metrics, and the ASGI middleware that measures its requests.

    Args:
        registry: where the metrics are registered (default: a new ``CollectorRegistry``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "jetloom_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "status"),
            registry=r,
        )
        self.request_duration = Histogram(
            "jetloom_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of its body: an SSE stream's whole life).",
            ("method", "route"),
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.runs_started = Counter(
            "jetloom_runs_started", "Runs this control plane started (POST /workflows/{name}/runs).", ("workflow",), registry=r
        )
        self.runs_cancelled = Counter(
            "jetloom_runs_cancelled", "Runs this control plane cancelled (POST /runs/{run_id}/cancel).", registry=r
        )
        self.sse_open = Gauge(
            "jetloom_sse_streams_open", "Server-Sent-Event streams being served now.", ("route",), registry=r
        )

    def middleware(self, app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """An ASGI middleware measuring ``app``'s HTTP requests (Litestar: ``middleware=[...]``;
        the route template is the one Litestar's router put in the scope)."""

        async def measured(scope: dict[str, Any], receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            t0 = time.perf_counter()
            status = 500  # (an exception no handler turned into a response)
            sse_route: str | None = None
            route = str(scope.get("path_template") or "")

            async def watched(message: Any) -> None:
                nonlocal status, sse_route
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    if _is_event_stream(message.get("headers") or ()):
                        sse_route = route
                        self.sse_open.labels(route).inc()
                await send(message)

            try:
                await app(scope, receive, watched)
            finally:
                if sse_route is not None:
                    self.sse_open.labels(sse_route).dec()
                method = str(scope.get("method", ""))
                self.requests.labels(method, route, str(status)).inc()
                self.request_duration.labels(method, route).observe(time.perf_counter() - t0)
                if 200 <= status < 300:
                    self._count_run(method, route, scope.get("path_params") or {})

        return measured

    def _count_run(self, method: str, route: str, params: dict[str, Any]) -> None:
        param = _STARTS.get((method, route))
        if param is not None:
            self.runs_started.labels(str(params.get(param, ""))).inc()
        elif (method, route) in _CANCELS:
            self.runs_cancelled.inc()


def _is_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"text/event-stream"
    return False

