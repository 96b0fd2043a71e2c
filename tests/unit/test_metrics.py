"""services.metrics: what a worker's and a control plane's registries expose, parsed back with
prometheus-client's own parser, after runs on the memory log (a completed chain, a step retried
once, a step failing its run, a step that waits)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import ServerSentEvent
from litestar.testing import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    MemoryLog,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)
from engine.model.records import OutMessage, StepFailed
from engine.runtime.executor import Executor
from engine.runtime.inprocess import append_start
from engine.runtime.telemetry import commit_ends_run
from engine.wire.headers import H_TYPE
from services.control.routes.metrics import MetricsPlugin
from services.metrics import STATS_METRICS, BacklogRow, ControlPlaneMetrics, WorkerMetrics


class Half(Event):
    pass


class Chain(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Half:
        return Half()

    @step
    async def second(self, ev: Half) -> StopEvent:
        return StopEvent(result="ok")


class Flaky(Workflow):
    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=0))
    async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        if ctx.retry_info().retry_number == 0:
            raise ConnectionError("first attempt fails")
        return StopEvent(result="second time")


class Boom(Workflow):
    @step
    async def go(self, ev: StartEvent) -> StopEvent:
        raise KeyError("always")


class Answer(Event):
    text: str


class Asks(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(Answer)
        return StopEvent(result=answer.text)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(sample name, labels): value}`` of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if not isinstance(got, bool):
            got = await got
        if got:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_worker_metrics_count_what_the_executors_did() -> None:
    log = MemoryLog()
    metrics = WorkerMetrics()
    executors = [Executor(wf(), log, observer=metrics) for wf in (Chain, Flaky, Boom, Asks)]
    for ex in executors:
        metrics.watch(ex.name, ex.stats)
        await ex.start()
    try:
        for i in range(3):
            await append_start(log, "Chain", f"c{i}", StartEvent())
        await append_start(log, "Flaky", "f1", StartEvent())
        await append_start(log, "Boom", "b1", StartEvent())
        await append_start(log, "Asks", "a1", StartEvent())

        def ended() -> bool:
            found = samples(generate_latest(metrics.registry).decode())
            return (
                found.get(("jetloom_runs_completed_total", frozenset({("workflow", "Chain")})), 0) == 3
                and found.get(("jetloom_runs_completed_total", frozenset({("workflow", "Flaky")})), 0) == 1
                and found.get(("jetloom_runs_failed_total", frozenset({("workflow", "Boom")})), 0) == 1
                and found.get(("jetloom_steps_suspended_total", frozenset({("workflow", "Asks"), ("step", "ask")})), 0) == 1
            )

        await until(ended, "the runs to end")
    finally:
        for ex in executors:
            await ex.stop(grace=1)

    found = samples(generate_latest(metrics.registry).decode())
    for name in ("first", "second"):
        assert value(found, "jetloom_steps_started_total", workflow="Chain", step=name) == 3
        assert value(found, "jetloom_steps_completed_total", workflow="Chain", step=name) == 3
        assert value(found, "jetloom_step_duration_seconds_count", workflow="Chain", step=name, outcome="completed") == 3
        assert value(found, "jetloom_commit_latency_seconds_count", workflow="Chain", step=name) == 3
        assert value(found, "jetloom_steps_in_flight", workflow="Chain", step=name) == 0
    assert value(found, "jetloom_run_duration_seconds_count", workflow="Chain", status="completed") == 3
    # the retried step: two attempts, the first failed and was retried, one commit
    assert value(found, "jetloom_steps_started_total", workflow="Flaky", step="go") == 2
    assert value(found, "jetloom_steps_failed_total", workflow="Flaky", step="go") == 1
    assert value(found, "jetloom_steps_retried_total", workflow="Flaky", step="go") == 1
    assert value(found, "jetloom_steps_completed_total", workflow="Flaky", step="go") == 1
    assert value(found, "jetloom_step_duration_seconds_count", workflow="Flaky", step="go", outcome="failed") == 1
    assert value(found, "jetloom_commit_latency_seconds_count", workflow="Flaky", step="go") == 1
    assert value(found, "jetloom_steps_resumed_total", workflow="Flaky") == 1  # (the retry's Resume)
    # the failing step ends its run failed; its StepFailed is a commit too
    assert value(found, "jetloom_steps_failed_total", workflow="Boom", step="go") == 1
    assert value(found, "jetloom_steps_retried_total", workflow="Boom", step="go") == 0
    assert value(found, "jetloom_run_duration_seconds_count", workflow="Boom", status="failed") == 1
    assert ("jetloom_runs_failed_total", frozenset({("workflow", "Chain")})) not in found
    # the waiting step: suspended, not in flight, nothing committed
    assert value(found, "jetloom_steps_suspended_total", workflow="Asks", step="ask") == 1
    assert value(found, "jetloom_steps_in_flight", workflow="Asks", step="ask") == 0
    # the executors' own counters, one series per watched workflow
    for _, (name, _) in STATS_METRICS.items():
        for wf in ("Chain", "Flaky", "Boom", "Asks"):
            assert (f"{name}_total", frozenset({("workflow", wf)})) in found
    assert value(found, "jetloom_dead_letters_total", workflow="Chain") == 0
    # no backlog read yet: the gauges have no series, and no read time
    assert not [k for k in found if k[0].startswith("jetloom_consumer_")]


def test_backlog_gauges_show_the_last_read() -> None:
    metrics = WorkerMetrics()
    metrics.set_backlog([BacklogRow("W", "s", "W--s", 7, 2), BacklogRow("W", "s", "W--s--cmd", 0, 1)])
    found = samples(generate_latest(metrics.registry).decode())
    assert value(found, "jetloom_consumer_pending", workflow="W", step="s", consumer="W--s") == 7
    assert value(found, "jetloom_consumer_ack_pending", workflow="W", step="s", consumer="W--s") == 2
    assert value(found, "jetloom_consumer_ack_pending", workflow="W", step="s", consumer="W--s--cmd") == 1
    assert abs(value(found, "jetloom_consumer_backlog_read_timestamp_seconds") - time.time()) < 60


async def test_a_failed_backlog_read_keeps_the_last_values() -> None:
    metrics = WorkerMetrics()
    reads = 0
    failed = asyncio.Event()

    async def read() -> list[BacklogRow]:
        nonlocal reads
        reads += 1
        if reads == 1:
            return [BacklogRow("W", "s", "W--s", 3, 0)]
        failed.set()
        raise ConnectionError("NATS is away")

    task = asyncio.create_task(metrics.poll_backlog(read, 0.01))
    try:
        await asyncio.wait_for(failed.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    found = samples(generate_latest(metrics.registry).decode())
    assert value(found, "jetloom_consumer_pending", workflow="W", step="s", consumer="W--s") == 3


def test_each_worker_metrics_has_its_own_registry() -> None:
    a, b = WorkerMetrics(), WorkerMetrics()
    a.step_started("W", "s")
    found = samples(generate_latest(b.registry).decode())
    assert ("jetloom_steps_started_total", frozenset({("workflow", "W"), ("step", "s")})) not in found


def test_the_worker_metrics_server_answers_over_http() -> None:
    metrics = WorkerMetrics()
    metrics.run_ended("W", "completed", 0.5)
    server = metrics.serve_http(0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
            found = samples(resp.read().decode())
    finally:
        server.stop()
    assert value(found, "jetloom_runs_completed_total", workflow="W") == 1
    assert value(found, "jetloom_run_duration_seconds_bucket", workflow="W", status="completed", le="0.5") == 1
    assert value(found, "jetloom_run_duration_seconds_bucket", workflow="W", status="completed", le="0.25") == 0


def _message(type_name: str, data: bytes = b"{}") -> OutMessage:
    return OutMessage("jetloom.run.W.r.sys." + type_name, data, {H_TYPE: type_name})


def test_commit_ends_run_reads_the_commit_types() -> None:
    failed = StepFailed(step="s", trigger=1, attempt=1, error_type="E", message="m", traceback="", duration_ms=1, worker="w")
    handled = msgspec.structs.replace(failed, handled_by="rescue")
    assert commit_ends_run([_message("StepCompleted"), _message("RunCompleted")]) == "completed"
    assert commit_ends_run([_message("StepFailed", msgspec.json.encode(failed))]) == "failed"
    assert commit_ends_run([_message("StepFailed", msgspec.json.encode(handled))]) is None
    assert commit_ends_run([_message("RunFailed")]) == "failed"
    assert commit_ends_run([OutMessage("jetloom.run.W.r.evt.E", b"{}", {H_TYPE: "E"})]) is None


# ---- control plane -----------------------------------------------------------------------------

Path = Annotated[str, PathParameter()]


@get("/things/{name:str}", sync_to_thread=False)
def thing(name: Path) -> dict[str, Any]:
    if name == "missing":
        raise NotFoundException(detail="no such thing")
    return {"name": name}


@get("/ticks", sync_to_thread=False)
def ticks() -> ServerSentEvent:
    return ServerSentEvent(iter(["a", "b"]))


def test_control_plane_metrics_count_requests_by_route_template_and_status() -> None:
    metrics = ControlPlaneMetrics()
    app = Litestar(route_handlers=[thing, ticks], plugins=[MetricsPlugin(open_=True, metrics=metrics)])
    with TestClient(app) as http:
        for name in ("a", "b", "missing"):
            http.get(f"/things/{name}")
        assert http.get("/ticks").text.count("data:") == 2
        resp = http.get("/metrics")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
        found = samples(resp.text)
    assert value(found, "jetloom_http_requests_total", method="GET", route="/things/{name}", status="200") == 2
    assert value(found, "jetloom_http_requests_total", method="GET", route="/things/{name}", status="404") == 1
    assert value(found, "jetloom_http_request_duration_seconds_count", method="GET", route="/things/{name}") == 3
    assert value(found, "jetloom_http_requests_total", method="GET", route="/ticks", status="200") == 1
    assert value(found, "jetloom_sse_streams_open", route="/ticks") == 0


def test_runs_started_and_cancelled_are_counted_from_their_routes() -> None:
    @post("/workflows/{name:str}/runs", sync_to_thread=False, status_code=201)
    def start(name: Path) -> dict[str, str]:
        if name == "Nope":
            raise NotFoundException(detail="no such workflow")
        return {"run_id": "r"}

    @post("/runs/{run_id:str}/cancel", sync_to_thread=False, status_code=202)
    def cancel(run_id: Path) -> dict[str, str]:
        return {"run_id": run_id}

    metrics = ControlPlaneMetrics()
    app = Litestar(route_handlers=[start, cancel], plugins=[MetricsPlugin(metrics=metrics)])
    with TestClient(app) as http:
        assert http.post("/workflows/Chain/runs").status_code == 201
        assert http.post("/workflows/Chain/runs").status_code == 201
        assert http.post("/workflows/Nope/runs").status_code == 404
        assert http.post("/runs/r/cancel").status_code == 202
        found = samples(http.get("/metrics").text)
    assert value(found, "jetloom_runs_started_total", workflow="Chain") == 2
    assert ("jetloom_runs_started_total", frozenset({("workflow", "Nope")})) not in found
    assert value(found, "jetloom_runs_cancelled_total") == 1


async def test_an_open_event_stream_is_counted_until_it_ends() -> None:
    metrics = ControlPlaneMetrics()
    release = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def stream(scope: dict[str, Any], receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: a\n\n", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path_template": "/runs/{run_id}/stream", "path_params": {}}
    task = asyncio.create_task(metrics.middleware(stream)(scope, receive, send))
    await until(lambda: len(sent) == 2, "the stream's first event")
    found = samples(generate_latest(metrics.registry).decode())
    assert value(found, "jetloom_sse_streams_open", route="/runs/{run_id}/stream") == 1
    release.set()
    await asyncio.wait_for(task, 5)
    found = samples(generate_latest(metrics.registry).decode())
    assert value(found, "jetloom_sse_streams_open", route="/runs/{run_id}/stream") == 0
    assert value(found, "jetloom_http_requests_total", method="GET", route="/runs/{run_id}/stream", status="200") == 1
