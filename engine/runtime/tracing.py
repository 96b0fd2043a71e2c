"""OpenTelemetry traces of runs: a span per run start, per step execution and per run, with the
W3C trace context carried in the records' NATS headers so that one run's steps form one trace
across processes.

Only the OpenTelemetry API (``opentelemetry-api``) is needed here; with no SDK configured its
tracer does nothing, and jetloom does not even ask for it: ``tracer()`` is ``None`` and the
executor, which decides once when it is built, adds no header and opens no span. The SDK (the
``otel`` extra) is configured from the standard ``OTEL_*`` environment variables on first use
(``configure_from_env``) when ``OTEL_TRACES_EXPORTER`` names an exporter and no tracer provider is
set yet; a process that sets its own provider first (``opentelemetry.trace.set_tracer_provider``)
keeps it.

The shape of a run's trace (docs/operations.md, "Traces"):

- ``start <workflow>`` (PRODUCER): the append of the run's start commit, a child of whatever span
  is current where the run is started (the control plane's HTTP span of
  ``POST /workflows/{name}/runs``, a parent run's step for a child run, the caller's span for
  ``Workflow.run()``). It is the root of the run's trace when nothing is current.
- ``<workflow>.<step>`` (CONSUMER): one step execution, a child of the span that emitted its
  trigger: the start span for the first step, the emitting step's span for the others, and for a
  resumed step (a wait ended, a retry or a timer fired) the span that appended its ``Resume``.
- ``send <workflow>`` (PRODUCER): an event sent to the run from outside, a child of the run's
  start span linked to the sender's current span; the step it triggers or resumes is its child.
- ``run <workflow>`` (INTERNAL): recorded by the process whose step commit ends the run, from the
  run's ``RunStarted`` time to the end, as a child of the run's start span (whose context every
  record of the run carries in ``Jl-Run-Trace``).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from importlib.metadata import entry_points
from typing import Final

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from engine.wire.headers import H_RUN_TRACE, H_TRACEPARENT, H_TRACESTATE

__all__ = [
    "ATTR_ATTEMPT",
    "ATTR_EVENT_TYPE",
    "ATTR_OUTCOME",
    "ATTR_RUN_ID",
    "ATTR_STATUS",
    "ATTR_STEP",
    "ATTR_TRIGGER_SEQ",
    "ATTR_WORKER",
    "ATTR_WORKFLOW",
    "TRACER_NAME",
    "carry",
    "configure_from_env",
    "inject",
    "note_failure",
    "note_outcome",
    "record_run",
    "send_span",
    "start_span",
    "step_span",
    "traced",
    "tracer",
]

logger = logging.getLogger("jetloom.tracing")

TRACER_NAME: Final = "jetloom"
# Attribute names: jetloom's own namespace, dot-separated snake_case (OpenTelemetry's naming rules)
ATTR_RUN_ID: Final = "jetloom.run_id"
ATTR_WORKFLOW: Final = "jetloom.workflow"
ATTR_STEP: Final = "jetloom.step"
ATTR_ATTEMPT: Final = "jetloom.attempt"
ATTR_TRIGGER_SEQ: Final = "jetloom.trigger_seq"
ATTR_WORKER: Final = "jetloom.worker"
ATTR_EVENT_TYPE: Final = "jetloom.event_type"  # on a send span: the type of the event sent
ATTR_OUTCOME: Final = "jetloom.outcome"  # on a step span: suspended, failed (else completed)
ATTR_STATUS: Final = "jetloom.status"  # on a run span: completed or failed

_EXPORTER_GROUP: Final = "opentelemetry_traces_exporter"  # the entry points exporters register
_DEFAULT_SERVICE: Final = "jetloom"
_W3C = TraceContextTextMapPropagator()
_CARRIED: Final = (H_TRACEPARENT, H_TRACESTATE, H_RUN_TRACE)

# The run's start span context (a W3C traceparent) while a span of the run is current (its start,
# a step, an event sent to it): what the records appended then carry in ``Jl-Run-Trace``.
_run_trace: ContextVar[str | None] = ContextVar("jetloom_run_trace", default=None)
_configured = False


def configure_from_env() -> bool:
    """Set the global tracer provider from the ``OTEL_*`` environment, once per process.

    Does so only when ``OTEL_TRACES_EXPORTER`` names one or more exporters (comma-separated; not
    ``none``), ``OTEL_SDK_DISABLED`` is not ``true`` and no provider is set yet. The provider
    is the SDK's ``TracerProvider`` (which reads ``OTEL_TRACES_SAMPLER``, ``OTEL_SPAN_*`` limits
    itself) with the resource of ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (service name
    ``jetloom`` when neither gives one) and one ``BatchSpanProcessor`` per exporter (reading
    ``OTEL_BSP_*``). Exporters are found by name among the ``opentelemetry_traces_exporter``
    entry points installed packages register: ``console`` (the SDK's, to standard output),
    ``otlp`` (``opentelemetry-exporter-otlp``), ... The provider flushes at interpreter exit.

    Returns:
        whether this call set the provider.

    Raises:
        ValueError: an exporter name no installed package provides.
    """
    global _configured
    if _configured:
        return False
    _configured = True
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False  # (the process set its own provider: it stays)
    try:
        # (the SDK is the optional ``otel`` extra: imported only when the environment asks for it)
        sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
        sdk_export = importlib.import_module("opentelemetry.sdk.trace.export")
        sdk_resources = importlib.import_module("opentelemetry.sdk.resources")
    except ImportError:
        logger.warning(
            "OTEL_TRACES_EXPORTER is set but opentelemetry-sdk is not installed: no traces "
            "(install jetloom[otel])"
        )
        return False
    exporters = []
    for name in names:
        found = entry_points(group=_EXPORTER_GROUP, name=name)
        if not found:
            known = sorted(ep.name for ep in entry_points(group=_EXPORTER_GROUP))
            raise ValueError(
                f"OTEL_TRACES_EXPORTER names {name!r}, which no installed package provides "
                f"(installed: {', '.join(known) or 'none'})"
            )
        exporters.append(next(iter(found)).load()())
    resource = sdk_resources.Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(sdk_resources.Resource({"service.name": _DEFAULT_SERVICE}))
    provider = sdk_trace.TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(sdk_export.BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def tracer() -> Tracer | None:
    """jetloom's tracer when a tracer provider is set (after ``configure_from_env``), else
    ``None``: the caller then neither opens spans nor carries trace context."""
    configure_from_env()
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer(TRACER_NAME)


def inject(headers: dict[str, str]) -> None:
    """Put the current trace context in a record's ``headers`` (``traceparent``, ``tracestate``,
    as the global propagators write them, W3C trace context by default; ``OTEL_PROPAGATORS``), and
    the run's start span context (``Jl-Run-Trace``) while one of its steps executes. Callers call
    it only when tracing is on (``tracer()`` is not ``None``, or ``traced()``): with no SDK it
    would only cost time."""
    propagate.inject(headers)
    run_trace = _run_trace.get()
    if run_trace is not None:
        headers[H_RUN_TRACE] = run_trace


def start_span(workflow: str, run_id: str) -> AbstractContextManager[Span | None]:
    """The span of a run's start commit (``start <workflow>``), a context manager: current while
    the commit is built and appended, so its records carry it, and the run's start span
    (``Jl-Run-Trace``). Gives ``None`` and does nothing when tracing is off (``tracer()``)."""
    tr = tracer()
    return nullcontext() if tr is None else _start_span(tr, workflow, run_id)


@contextmanager
def _start_span(tr: Tracer, workflow: str, run_id: str) -> Iterator[Span]:
    attributes: Attributes = {ATTR_RUN_ID: run_id, ATTR_WORKFLOW: workflow}
    with tr.start_as_current_span(f"start {workflow}", kind=SpanKind.PRODUCER, attributes=attributes) as span:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        token = _run_trace.set(carrier.get("traceparent"))
        try:
            yield span
        finally:
            _run_trace.reset(token)


def traced() -> bool:
    """Whether a span is current, recorded or not (the records appended now should carry its
    context, ``inject``: an unsampled run's decision travels with it too)."""
    return trace.get_current_span().get_span_context().is_valid


def carry(source: Mapping[str, str], headers: dict[str, str]) -> None:
    """Copy the trace context headers of record ``source`` (``traceparent``, ``tracestate``,
    ``Jl-Run-Trace``) to ``headers``: a record appended on behalf of another (a ``Resume`` for a
    step's trigger) continues its trace. Copies nothing when ``source`` has none."""
    for name in _CARRIED:
        value = source.get(name)
        if value is not None:
            headers[name] = value


@contextmanager
def step_span(
    tr: Tracer,
    workflow: str,
    step: str,
    run_id: str,
    trigger_seq: int,
    attempt: int,
    worker: str,
    trigger_headers: Mapping[str, str],
) -> Iterator[Span]:
    """The span of one step execution (``<workflow>.<step>``), a child of the context its
    trigger's headers carry (a new trace when they carry none); current while the step runs and
    commits, so the step's own spans are its children and its records carry it."""
    parent = propagate.extract(trigger_headers)
    attributes: Attributes = {
        ATTR_RUN_ID: run_id,
        ATTR_WORKFLOW: workflow,
        ATTR_STEP: step,
        ATTR_ATTEMPT: attempt,
        ATTR_TRIGGER_SEQ: trigger_seq,
        ATTR_WORKER: worker,
    }
    token = _run_trace.set(trigger_headers.get(H_RUN_TRACE))
    try:
        with tr.start_as_current_span(
            f"{workflow}.{step}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            yield span
    finally:
        _run_trace.reset(token)


@contextmanager
def send_span(
    tr: Tracer, workflow: str, run_id: str, event_type: str, run_headers: Mapping[str, str]
) -> Iterator[Span]:
    """The span of an event sent to a run from outside (``send <workflow>``, PRODUCER): a child
    of the run's start span (from ``run_headers``, those of the run's ``RunStarted``; a new trace
    when they carry none), linked to the span current at the sender (an HTTP request's), and
    current while the event is appended and the waits it ends are resumed."""
    run_trace = run_headers.get(H_RUN_TRACE) or run_headers.get(H_TRACEPARENT)
    parent = _W3C.extract({"traceparent": run_trace}) if run_trace is not None else None
    sender = trace.get_current_span().get_span_context()
    links = [Link(sender)] if sender.is_valid else None
    attributes: Attributes = {ATTR_RUN_ID: run_id, ATTR_WORKFLOW: workflow, ATTR_EVENT_TYPE: event_type}
    token = _run_trace.set(run_trace)
    try:
        with tr.start_as_current_span(
            f"send {workflow}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes, links=links
        ) as span:
            yield span
    finally:
        _run_trace.reset(token)


def record_run(tr: Tracer, workflow: str, run_id: str, *, started_ns: int | None, failed: bool, worker: str) -> None:
    """Record the span of a whole run (``run <workflow>``), from ``started_ns`` (its
    ``RunStarted`` time, ns since the epoch; now when unknown) to now, as a child of the run's
    start span when the current step carries it (else of the current span). Called by the
    process whose step commit ended the run."""
    run_trace = _run_trace.get()
    parent = _W3C.extract({"traceparent": run_trace}) if run_trace is not None else None
    attributes: Attributes = {
        ATTR_RUN_ID: run_id,
        ATTR_WORKFLOW: workflow,
        ATTR_WORKER: worker,
        ATTR_STATUS: "failed" if failed else "completed",
    }
    span = tr.start_span(f"run {workflow}", context=parent, start_time=started_ns, attributes=attributes)
    if failed:
        span.set_status(Status(StatusCode.ERROR, "run failed"))
    span.end()


def note_outcome(outcome: str) -> None:
    """Set the current step span's ``jetloom.outcome`` (no-op outside a recording span)."""
    trace.get_current_span().set_attribute(ATTR_OUTCOME, outcome)


def note_failure(exc: BaseException) -> None:
    """Mark the current step span failed with ``exc`` (recorded as a span event)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(ATTR_OUTCOME, "failed")
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
