"""Test helpers for traces (tests/unit/test_tracing.py, tests/integration/test_tracing.py): the
process's one OpenTelemetry SDK provider with an in-memory exporter, and the spans the SDK's
console exporter printed in a process's output."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXPORTER = InMemorySpanExporter()
_installed = False


def install() -> InMemorySpanExporter:
    """Set the global SDK tracer provider (OpenTelemetry sets it once per process; a provider
    already set gets the exporter added) with ``EXPORTER`` on a synchronous processor."""
    global _installed
    if not _installed:
        current = trace.get_tracer_provider()
        provider = current if isinstance(current, TracerProvider) else TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        if provider is not current:
            trace.set_tracer_provider(provider)
        _installed = True
    return EXPORTER


def console_spans(text: str) -> list[dict[str, Any]]:
    """The spans the SDK's ``ConsoleSpanExporter`` printed (indented JSON objects, one after
    another) in ``text``, among other output lines."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i = 0
    while (i := text.find("{", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if isinstance(obj, dict) and "context" in obj and "name" in obj:
            out.append(obj)
        i = end
    return out


def hex_id(value: int, width: int) -> str:
    """A trace (``width`` 32) or span (16) id as the console exporter prints it."""
    return f"0x{value:0{width}x}"
