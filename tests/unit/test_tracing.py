"""OpenTelemetry traces of in-process runs (engine.runtime.tracing): one trace per run, the step
spans' parents and attributes, the run span, failures, waits resumed, and the SDK configured from
the ``OTEL_*`` environment (a console exporter printing an in-process run's spans)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from engine import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    Workflow,
    catch_error,
    step,
)
from engine.memory.log import MemoryLog
from engine.runtime import tracing
from engine.wire.headers import H_RUN_TRACE, H_TRACEPARENT
from tests.integration.procs import eventually
from tests.otelspans import EXPORTER, console_spans, install

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    install()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


class Middle(Event):
    n: int


class Ask(InputRequiredEvent):
    prompt: str


class Answer(HumanResponseEvent):
    text: str


class Chain(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Middle:
        return Middle(n=int(ev.n))

    @step
    async def second(self, ev: Middle) -> StopEvent:
        with trace.get_tracer("user").start_as_current_span("user work"):
            return StopEvent(result=ev.n * 2)


class Boom(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        raise RuntimeError("no luck")


class Flaky(Workflow):
    calls = 0

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=0))
    async def only(self, ev: StartEvent) -> StopEvent:
        type(self).calls += 1
        if type(self).calls == 1:
            raise RuntimeError("first time")
        return StopEvent(result="second time")


class Rescued(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        raise KeyError("gone")

    @catch_error
    async def rescue(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(result="rescued")


class Approve(HumanResponseEvent):
    ok: bool


class Gated(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> None:
        return None

    @step
    async def decide(self, ev: Approve) -> StopEvent:
        return StopEvent(result=ev.ok)


class Half(Workflow):
    @step
    async def half(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=ev.x // 2)


class Parent(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(Half, x=ev.x))


class Asks(Workflow):
    @step
    async def ask(self, ev: StartEvent, ctx: Context) -> StopEvent:
        got = await ctx.wait_for_event(Answer, waiter_event=Ask(prompt="?"))
        return StopEvent(result=got.text)


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = by_name(spans, name)
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


async def test_a_run_is_one_trace_with_each_step_a_child_of_the_span_that_emitted_its_trigger(
    spans: InMemorySpanExporter,
) -> None:
    log = MemoryLog()
    handler = Chain(timeout=10, log=log).run(n=21)
    assert await handler == 42
    done = spans.get_finished_spans()
    start, first, second = one(done, "start Chain"), one(done, "Chain.first"), one(done, "Chain.second")
    run, user = one(done, "run Chain"), one(done, "user work")
    ids = {s.context.trace_id for s in (start, first, second, run, user)}
    assert len(ids) == 1  # one trace
    assert start.parent is None and start.kind is SpanKind.PRODUCER
    assert first.parent is not None and first.parent.span_id == start.context.span_id
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    assert user.parent is not None and user.parent.span_id == second.context.span_id
    assert run.parent is not None and run.parent.span_id == start.context.span_id
    assert first.kind is SpanKind.CONSUMER
    attrs = dict(second.attributes or {})
    assert attrs[tracing.ATTR_RUN_ID] == handler.run_id
    assert attrs[tracing.ATTR_WORKFLOW] == "Chain"
    assert attrs[tracing.ATTR_STEP] == "second"
    assert attrs[tracing.ATTR_ATTEMPT] == 1
    assert isinstance(attrs[tracing.ATTR_TRIGGER_SEQ], int) and attrs[tracing.ATTR_TRIGGER_SEQ] > 0
    assert attrs[tracing.ATTR_WORKER]
    # the run span covers the run: from before the first step to after the last
    assert run.start_time is not None and first.start_time is not None and run.start_time <= first.start_time
    assert run.end_time is not None and second.start_time is not None and run.end_time >= second.start_time
    assert dict(run.attributes or {})[tracing.ATTR_STATUS] == "completed"
    # every record the steps committed carries the trace context in its headers
    raws = await log.read("Chain", handler.run_id)
    for raw in raws:
        assert H_TRACEPARENT in raw.headers, raw.subject
        assert f"-{format(start.context.trace_id, '032x')}-" in raw.headers[H_TRACEPARENT]
    stepped = [r for r in raws if r.headers.get("Jl-Step")]
    assert stepped and all(H_RUN_TRACE in r.headers for r in stepped)


async def test_a_failing_step_marks_its_span_and_the_run_span_failed(spans: InMemorySpanExporter) -> None:
    with pytest.raises(Exception, match="no luck"):
        await Boom(timeout=10, log=MemoryLog()).run()
    done = spans.get_finished_spans()
    only, run = one(done, "Boom.only"), one(done, "run Boom")
    assert only.status.status_code is StatusCode.ERROR
    assert dict(only.attributes or {})[tracing.ATTR_OUTCOME] == "failed"
    assert any(e.name == "exception" for e in only.events)
    assert run.status.status_code is StatusCode.ERROR
    assert dict(run.attributes or {})[tracing.ATTR_STATUS] == "failed"


async def test_a_retried_attempt_is_a_child_of_the_attempt_that_failed(spans: InMemorySpanExporter) -> None:
    assert await Flaky(timeout=10, log=MemoryLog()).run() == "second time"
    first, second = sorted(by_name(spans.get_finished_spans(), "Flaky.only"), key=lambda s: s.start_time or 0)
    assert [dict(s.attributes or {})[tracing.ATTR_ATTEMPT] for s in (first, second)] == [1, 2]
    assert first.status.status_code is StatusCode.ERROR
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    assert dict(one(spans.get_finished_spans(), "run Flaky").attributes or {})[tracing.ATTR_STATUS] == "completed"


async def test_an_error_handler_runs_under_the_step_that_failed(spans: InMemorySpanExporter) -> None:
    assert await Rescued(timeout=10, log=MemoryLog()).run() == "rescued"
    done = spans.get_finished_spans()
    only, rescue, run = one(done, "Rescued.only"), one(done, "Rescued.rescue"), one(done, "run Rescued")
    assert rescue.parent is not None and rescue.parent.span_id == only.context.span_id
    assert dict(run.attributes or {})[tracing.ATTR_STATUS] == "completed"  # (one run span: its end)


async def test_an_event_sent_from_a_span_elsewhere_joins_the_run_trace_linked_to_it(
    spans: InMemorySpanExporter,
) -> None:
    handler = Gated(timeout=10, log=MemoryLog()).run()

    async def asked() -> bool:
        return any(s.name == "Gated.ask" for s in spans.get_finished_spans())

    await eventually(asked, 10, "the first step's span")
    with trace.get_tracer("caller").start_as_current_span("caller request") as caller:
        await handler.send_event(Approve(ok=True))
    assert await handler is True
    done = spans.get_finished_spans()
    start, send, decide = one(done, "start Gated"), one(done, "send Gated"), one(done, "Gated.decide")
    assert caller.get_span_context().trace_id != start.context.trace_id  # (the caller's own trace)
    assert send.parent is not None and send.parent.span_id == start.context.span_id
    assert [link.context.span_id for link in send.links] == [caller.get_span_context().span_id]
    assert decide.parent is not None and decide.parent.span_id == send.context.span_id
    run = one(done, "run Gated")
    assert run.context.trace_id == start.context.trace_id
    assert run.parent is not None and run.parent.span_id == start.context.span_id


async def test_a_child_run_is_in_its_parent_run_trace(spans: InMemorySpanExporter) -> None:
    assert await Parent(timeout=10, log=MemoryLog()).run(x=8) == 4
    done = spans.get_finished_spans()
    calls = sorted(by_name(done, "Parent.call"), key=lambda s: s.start_time or 0)
    child_start, half = one(done, "start Half"), one(done, "Half.half")
    assert len(calls) == 2  # suspended on the child, resumed by its end
    assert len({s.context.trace_id for s in (*calls, child_start, half, one(done, "run Half"))}) == 1
    assert child_start.parent is not None and child_start.parent.span_id == calls[0].context.span_id
    assert half.parent is not None and half.parent.span_id == child_start.context.span_id
    # the child's end resumes the parent's step: under the child's last step
    assert calls[1].parent is not None and calls[1].parent.span_id == half.context.span_id


async def test_a_step_resumed_after_a_wait_stays_in_the_run_trace(spans: InMemorySpanExporter) -> None:
    handler = Asks(timeout=10, log=MemoryLog()).run()
    async for ev in handler.stream_events():
        if isinstance(ev, Ask):
            await handler.send_event(Answer(text="yes"))  # (from outside any span)
    assert await handler == "yes"
    asks = by_name(spans.get_finished_spans(), "Asks.ask")
    assert len(asks) == 2  # suspended, then resumed
    outcomes = [dict(s.attributes or {}).get(tracing.ATTR_OUTCOME) for s in asks]
    assert outcomes[0] == "suspended"
    assert len({s.context.trace_id for s in asks}) == 1
    # the event, sent from outside any span, has a span of its own in the run's trace, under the
    # start span; the resumed execution is its child
    start, send = one(spans.get_finished_spans(), "start Asks"), one(spans.get_finished_spans(), "send Asks")
    first, resumed = sorted(asks, key=lambda s: s.start_time or 0)
    assert first.parent is not None and first.parent.span_id == start.context.span_id
    assert send.parent is not None and send.parent.span_id == start.context.span_id
    assert send.context.trace_id == start.context.trace_id and not send.links
    assert dict(send.attributes or {})[tracing.ATTR_EVENT_TYPE] == "Answer"
    assert resumed.parent is not None and resumed.parent.span_id == send.context.span_id


def test_console_exporter_from_the_environment_prints_an_in_process_run(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            from tests.unit.test_tracing import Chain

            async def main():
                return await Chain(timeout=10).run(n=1)

            print("result", asyncio.run(main()))
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "traced-script",
    }
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    found = console_spans(proc.stdout)
    names = {s["name"] for s in found}
    assert {"start Chain", "Chain.first", "Chain.second", "run Chain"} <= names, proc.stdout
    assert len({s["context"]["trace_id"] for s in found}) == 1
    assert all(s["resource"]["attributes"]["service.name"] == "traced-script" for s in found)
    assert "result 2" in proc.stdout


def test_an_unsampled_run_records_no_span_and_carries_its_decision(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            from engine.memory.log import MemoryLog
            from tests.unit.test_tracing import Chain

            async def main():
                log = MemoryLog()
                handler = Chain(timeout=10, log=log).run(n=1)
                await handler
                for raw in await log.read("Chain", handler.run_id):
                    print("header", raw.headers.get("traceparent"))

            asyncio.run(main())
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    }
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert console_spans(proc.stdout) == []
    headers = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("header ")]
    assert len(headers) == 4 and len({h.split("-")[1] for h in headers}) == 1  # one trace id
    assert all(h.endswith("-00") or h.endswith("-02") for h in headers)  # not sampled


def test_an_unknown_exporter_name_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "nosuch"}
    code = "from engine.runtime import tracing; tracing.configure_from_env()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "OTEL_TRACES_EXPORTER names 'nosuch'" in proc.stderr


def test_no_environment_no_provider_means_no_tracer(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    code = "from engine.runtime import tracing; print(tracing.tracer())"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "None"
