"""Prometheus metrics over HTTP: a real worker process with ``--metrics-port`` and a real control
plane (uvicorn) on a real nats-server run a few runs, a retried and a failing step among them;
what the two scrapes say must match what ran."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import ConstantDelayRetryPolicy, Context, Event, StartEvent, StopEvent, Workflow, step
from services.client import ApiError, Client
from services.control.auth import ApiAuth
from services.launcher import ControlPlaneServer, WorkerProcess
from tests.integration.procs import eventually

TARGET = "tests.integration.test_metrics:Mixed"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class MixedStart(StartEvent):
    mode: str = "ok"


class Half(Event):
    mode: str


class Mixed(Workflow):
    """``ok`` completes in two steps; ``flaky`` fails its first attempt at ``go``, then completes;
    ``boom`` fails both attempts of ``go`` and the run."""

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0))
    async def go(self, ctx: Context, ev: MixedStart) -> Half:
        if ev.mode == "boom" or (ev.mode == "flaky" and ctx.retry_info().retry_number == 0):
            raise RuntimeError(f"{ev.mode} fails")
        return Half(mode=ev.mode)

    @step
    async def finish(self, ev: Half) -> StopEvent:
        return StopEvent(result=ev.mode)


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def at(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def scrape(url: str, **kwargs: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(url, headers=kwargs)
        resp.raise_for_status()
        assert resp.headers["content-type"].startswith("text/plain")
        return parse(resp.text)


async def test_a_worker_and_the_control_plane_expose_what_ran(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    worker = await start_worker(TARGET, "--metrics-port", "0")
    ready = await worker.wait_ready()
    found_port = re.search(r"metrics=127\.0\.0\.1:(\d+)", ready)
    assert found_port, ready
    port = int(found_port.group(1))
    worker_url = f"http://127.0.0.1:{port}/metrics"

    modes = ["ok", "ok", "ok", "flaky", "boom"]
    handles = [await client.start("Mixed", mode=m) for m in modes]
    results = []
    for h in handles:
        try:
            results.append(await h.result())
        except ApiError:
            raise
        except Exception as exc:  # the failed run's error
            results.append(type(exc).__name__)
    assert results[:4] == ["ok", "ok", "ok", "flaky"]

    # the run's end may be in the log a moment before the worker's commit returns to the observer
    async def counted() -> bool:
        found = await scrape(worker_url)
        return found.get(("jetloom_runs_completed_total", frozenset({("workflow", "Mixed")}))) == 4 and found.get(
            ("jetloom_runs_failed_total", frozenset({("workflow", "Mixed")}))
        ) == 1

    await eventually(counted, what="the worker's run counters")
    found = await scrape(worker_url)
    go = {"workflow": "Mixed", "step": "go"}
    finish = {"workflow": "Mixed", "step": "finish"}
    # go: 3 ok + 2 flaky attempts + 2 boom attempts; 3 of them raised, 2 were retried
    assert at(found, "jetloom_steps_started_total", **go) == 7
    assert at(found, "jetloom_steps_failed_total", **go) == 3
    assert at(found, "jetloom_steps_retried_total", **go) == 2
    assert at(found, "jetloom_steps_completed_total", **go) == 4
    assert at(found, "jetloom_step_duration_seconds_count", **go, outcome="completed") == 4
    assert at(found, "jetloom_step_duration_seconds_count", **go, outcome="failed") == 3
    assert at(found, "jetloom_commit_latency_seconds_count", **go) == 5  # (4 successes, boom's StepFailed)
    assert at(found, "jetloom_steps_started_total", **finish) == 4
    assert at(found, "jetloom_steps_completed_total", **finish) == 4
    assert at(found, "jetloom_commit_latency_seconds_count", **finish) == 4
    assert at(found, "jetloom_steps_in_flight", **go) == 0
    assert at(found, "jetloom_steps_in_flight", **finish) == 0
    assert at(found, "jetloom_run_duration_seconds_count", workflow="Mixed", status="completed") == 4
    assert at(found, "jetloom_run_duration_seconds_count", workflow="Mixed", status="failed") == 1
    assert 0 < at(found, "jetloom_run_duration_seconds_sum", workflow="Mixed", status="completed") < 60
    assert at(found, "jetloom_steps_resumed_total", workflow="Mixed") == 2  # (the retries' Resumes)
    assert at(found, "jetloom_dead_letters_total", workflow="Mixed") == 0
    assert at(found, "jetloom_redeliveries_total", workflow="Mixed") == 0
    # the step consumers' backlog, read from NATS once the worker started
    for consumer, stepname in (("Mixed--go", "go"), ("Mixed--go--cmd", "go"), ("Mixed--finish", "finish")):
        assert at(found, "jetloom_consumer_pending", workflow="Mixed", step=stepname, consumer=consumer) >= 0
        assert ("jetloom_consumer_ack_pending", frozenset({("workflow", "Mixed"), ("step", stepname), ("consumer", consumer)})) in found

    # a scraper finds the port in the registry
    entries = [s for s in await client.services() if s["service"] == "Mixed"]
    assert [e["metrics_port"] for e in entries] == [port]

    # the control plane's own: the runs it started, its requests by route template and status
    cp = await scrape(f"{api}/metrics")
    assert at(cp, "jetloom_runs_started_total", workflow="Mixed") == 5
    assert at(cp, "jetloom_http_requests_total", method="POST", route="/workflows/{name}/runs", status="201") == 5
    assert at(cp, "jetloom_http_request_duration_seconds_count", method="POST", route="/workflows/{name}/runs") == 5
    assert ("jetloom_http_requests_total", frozenset({("method", "GET"), ("route", "/metrics"), ("status", "200")})) not in cp
    cp = await scrape(f"{api}/metrics")
    assert at(cp, "jetloom_http_requests_total", method="GET", route="/metrics", status="200") == 1


@pytest.mark.parametrize("open_", [False, True])
async def test_the_control_plane_metrics_follow_the_api_tokens_unless_opened(nats_url: str, open_: bool) -> None:
    cp = ControlPlaneServer(
        nats_url, port=0, shutdown_grace=1.0, auth=ApiAuth.from_token("metrics-test-token"), metrics_open=open_
    )
    url = await cp.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            bare = await http.get("/metrics")
            assert bare.status_code == (200 if open_ else 401), bare.text
            assert (await http.get("/runs")).status_code == 401  # (the rest of the API is not opened)
            with_token = await http.get("/metrics", headers={"Authorization": "Bearer metrics-test-token"})
            assert with_token.status_code == 200
            found = parse(with_token.text)
            status = "200" if open_ else "401"
            assert at(found, "jetloom_http_requests_total", method="GET", route="/metrics", status=status) == 1
            doc = (await http.get("/schema/openapi.json")).json()
            assert "get" in doc["paths"]["/metrics"]
    finally:
        await cp.stop()
