"""Traces across processes: a run started through the control plane (real uvicorn, in this
process, with the SDK's in-memory exporter) whose steps run in two worker processes (their SDK
configured from ``OTEL_*``: the console exporter, read from their output) is one trace: the HTTP
span of ``POST /workflows/{name}/runs`` -> the start span -> each step a child of the step whose
event triggered it, whichever process ran it, and the run span under the start span."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry.trace import SpanKind

from engine.runtime import tracing
from tests.integration.procs import WorkerProcess, eventually
from tests.otelspans import EXPORTER, console_spans, hex_id, install

CHAIN = "tests.workflows:Chain3"


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    install()  # (before the control plane is built: it adds its HTTP tracing then)


def otel_env(service: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # (ms: spans reach the output soon after they end)
    }


def spans_of(w: WorkerProcess) -> list[dict[str, Any]]:
    return console_spans("\n".join(w.lines))


async def test_a_run_started_over_http_across_two_workers_is_one_trace(
    nats_url: str, api: str, workers: Callable[..., WorkerProcess]
) -> None:
    # parse and finish in one process, count in the other: the trace crosses processes twice
    w1 = workers(CHAIN, nats_url, "--step", "parse", "--step", "finish", env=otel_env("w-one"))
    w2 = workers(CHAIN, nats_url, "--step", "count", env=otel_env("w-two"))
    EXPORTER.clear()
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        assert (await http.get("/health")).status_code == 200  # (a probe: not traced)
        res = await http.post("/workflows/Chain3/runs", params={"wait": "true", "timeout": "30"}, json={"text": "a b c"})
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "completed"
    run_id = res.json()["run_id"]

    here = EXPORTER.get_finished_spans()
    start = next(s for s in here if s.name == "start Chain3")
    http_span = next(s for s in here if s.kind is SpanKind.SERVER and s.context.trace_id == start.context.trace_id)
    assert http_span.name == "POST /workflows/Chain3/runs"  # (the path: Litestar's plugin names spans before routing)
    assert start.parent is not None and start.parent.span_id == http_span.context.span_id
    trace_id = hex_id(start.context.trace_id, 32)
    assert not [s for s in here if s.name == "GET /health"]

    def found() -> dict[str, dict[str, Any]]:
        spans = [s for w in (w1, w2) for s in spans_of(w) if s["context"]["trace_id"] == trace_id]
        return {s["name"]: s for s in spans}

    names = {"Chain3.parse", "Chain3.count", "Chain3.finish", "run Chain3"}

    async def all_exported() -> bool:
        return names <= found().keys()

    await eventually(all_exported, 30, f"spans {names} in the workers' output")
    by = found()
    parse, count, finish, run = (by[n] for n in ("Chain3.parse", "Chain3.count", "Chain3.finish", "run Chain3"))
    # who ran what: the resources and the worker attribute say the processes
    assert parse["resource"]["attributes"]["service.name"] == "w-one"
    assert count["resource"]["attributes"]["service.name"] == "w-two"
    assert finish["resource"]["attributes"]["service.name"] == "w-one"
    assert parse["attributes"][tracing.ATTR_WORKER] != count["attributes"][tracing.ATTR_WORKER]
    # parents: each step under the span that emitted its trigger, the run under the start span
    assert parse["parent_id"] == hex_id(start.context.span_id, 16)
    assert count["parent_id"] == parse["context"]["span_id"]
    assert finish["parent_id"] == count["context"]["span_id"]
    assert run["parent_id"] == hex_id(start.context.span_id, 16)
    for s in (parse, count, finish):
        assert s["kind"] == "SpanKind.CONSUMER"
        attrs = s["attributes"]
        assert attrs[tracing.ATTR_RUN_ID] == run_id
        assert attrs[tracing.ATTR_WORKFLOW] == "Chain3"
        assert attrs[tracing.ATTR_STEP] == s["name"].split(".")[1]
        assert attrs[tracing.ATTR_ATTEMPT] == 1
        assert attrs[tracing.ATTR_TRIGGER_SEQ] > 0
    assert run["attributes"][tracing.ATTR_STATUS] == "completed"
    assert run["start_time"] <= parse["start_time"]


async def test_an_event_sent_over_http_to_a_worker_served_run_joins_its_trace(
    nats_url: str, api: str, workers: Callable[..., WorkerProcess]
) -> None:
    w = workers("tests.workflows:Gate", nats_url, env=otel_env("w-gate"))
    EXPORTER.clear()
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        res = await http.post("/workflows/Gate/runs", json={})
        assert res.status_code in (200, 201, 202), res.text
        run_id = res.json()["run_id"]
        start = next(s for s in EXPORTER.get_finished_spans() if s.name == "start Gate")
        trace_id = hex_id(start.context.trace_id, 32)

        async def asked() -> bool:
            return any(s["name"] == "Gate.ask" and s["context"]["trace_id"] == trace_id for s in spans_of(w))

        await eventually(asked, 30, "the ask step's span in the worker's output")
        sent = await http.post(f"/runs/{run_id}/events", json={"type": "Approval", "data": {"approved": True}})
        assert sent.status_code in (200, 202), sent.text
        http_span = next(s for s in EXPORTER.get_finished_spans() if s.name == f"POST /runs/{run_id}/events")

    send = next(s for s in EXPORTER.get_finished_spans() if s.name == "send Gate")
    assert send.context.trace_id == start.context.trace_id
    assert send.parent is not None and send.parent.span_id == start.context.span_id
    assert [link.context.span_id for link in send.links] == [http_span.context.span_id]

    async def decided() -> bool:
        names = {s["name"] for s in spans_of(w) if s["context"]["trace_id"] == trace_id}
        return {"Gate.decide", "run Gate"} <= names

    await eventually(decided, 30, "the decide and run spans in the worker's output")
    by = {s["name"]: s for s in spans_of(w) if s["context"]["trace_id"] == trace_id}
    assert by["Gate.decide"]["parent_id"] == hex_id(send.context.span_id, 16)
    assert by["run Gate"]["parent_id"] == hex_id(start.context.span_id, 16)
