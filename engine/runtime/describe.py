"""A workflow's description: steps, event JSON schemas and step graph, as plain data.

Workers publish it to the service registry; the control plane serves it (``GET /workflows``) and
validates bodies against its schemas without importing the workflow's code.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic.errors import PydanticInvalidForJsonSchema

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
    """JSON schema of an event's fields (draft 2020-12): pydantic's schema of the model
    (``model_json_schema()``: titles, ``description``s from ``Field``, defaults, ``$defs`` for
    nested models), without the ``$type`` tag. Every event takes undeclared fields
    (``additionalProperties: true``). A class whose fields pydantic cannot describe (arbitrary
    types) gets a schema of any object. Cached per class; the result must not be mutated."""
    return _fields_schema(cls)


def _build_fields_schema(cls: type[Event]) -> dict[str, Any]:
    try:
        schema = dict(cls.model_json_schema())
    except PydanticInvalidForJsonSchema:
        return {"title": event_name(cls), "type": "object", "additionalProperties": True}
    props = schema.get("properties")
    if isinstance(props, dict) and TAG_FIELD in props:
        schema["properties"] = {k: v for k, v in props.items() if k != TAG_FIELD}
    schema["additionalProperties"] = True  # every event takes undeclared keyword fields
    return schema


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
