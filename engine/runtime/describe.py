"""A workflow's description: steps, event JSON schemas and step graph, as plain data.

Workers publish it to the service registry; the control plane serves it (``GET /workflows``) and
validates bodies against its schemas without importing the workflow's code.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from engine.model.events import TAG_FIELD, Event, StartEvent, StopEvent, class_path, event_name
from engine.ports.registry import Edge, StepInfo, WorkflowInfo
from engine.runtime.spec import WorkflowDefinition

__all__ = ["START_NODE", "STOP_NODE", "Edge", "StepInfo", "WorkflowInfo", "describe", "fields_schema"]

START_NODE = "_start"
STOP_NODE = "_stop"


@functools.cache
def _fields_schema(cls: type[Event]) -> dict[str, Any]:
    return _build_fields_schema(cls)


def fields_schema(cls: type[Event]) -> dict[str, Any]:
    """JSON schema of an event's fields: msgspec's schema with the ``$type`` tag removed from the
    top level (nested events keep theirs, as they appear in payloads). Cached per class; the
    result must not be mutated."""
    return _fields_schema(cls)


def _build_fields_schema(cls: type[Event]) -> dict[str, Any]:
    full = msgspec.json.schema(cls)
    defs: dict[str, Any] = dict(full.get("$defs", {}))
    top = dict(defs.pop(full["$ref"].rsplit("/", 1)[-1]))
    props = {k: v for k, v in top.get("properties", {}).items() if k != TAG_FIELD}
    top["properties"] = props
    required = [r for r in top.get("required", []) if r != TAG_FIELD]
    if required:
        top["required"] = required
    else:
        top.pop("required", None)
    if issubclass(cls, StartEvent):
        top["additionalProperties"] = True  # StartEvent takes undeclared keyword fields
    if defs:
        top["$defs"] = defs
    return top


def describe(cls: type[WorkflowDefinition]) -> WorkflowInfo:
    """The description of a (validated) workflow class."""
    steps = list(cls.steps.values())
    graph: list[Edge] = []
    for s in steps:
        for t in s.accepts:
            if issubclass(t, StartEvent):
                graph.append(Edge(source=START_NODE, target=s.name, event=event_name(t)))
        for t in s.produces:
            if issubclass(t, StopEvent):
                graph.append(Edge(source=s.name, target=STOP_NODE, event=event_name(t)))
                continue
            for r in steps:
                if any(issubclass(t, a) for a in r.accepts):
                    graph.append(Edge(source=s.name, target=r.name, event=event_name(t)))
    stops = sorted({event_name(t) for s in steps for t in s.produces if issubclass(t, StopEvent)})
    return WorkflowInfo(
        name=cls.workflow_name,
        class_path=class_path(cls),
        start_event=event_name(cls.start_event_class),
        stop_events=stops,
        steps=[
            StepInfo(
                name=s.name,
                accepts=list(s.accepts_names),
                emits=[event_name(t) for t in s.produces],
                num_workers=s.num_workers,
            )
            for s in steps
        ],
        events={name: fields_schema(t) for name, t in sorted(cls.events.items())},
        graph=graph,
    )
