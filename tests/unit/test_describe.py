"""Workflow descriptions (engine.runtime.describe) and deployment files (services.launcher): pure."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from jsonschema import Draft202012Validator

from engine import Event, StartEvent, StopEvent, Workflow, step
from engine.runtime.describe import WorkflowInfo, describe, fields_schema
from services.launcher import load_deployment
from tests.workflows import Gate, Ticker, TickStart


class Inner(Event):
    x: int


class Outer(Event):
    inner: Inner
    tags: list[str] = []


def test_fields_schema_is_pydantics_without_the_tag() -> None:
    schema = fields_schema(Outer)
    assert set(schema["properties"]) == {"inner", "tags"}
    assert schema["required"] == ["inner"]
    # Events are pydantic models (issue 18): a nested event is a plain object (no "$type" of its
    # own, as pydantic writes it); a tag sent anyway is an undeclared field, which events take.
    assert "$type" not in schema["$defs"]["Inner"]["properties"]
    v = Draft202012Validator(schema)
    assert v.is_valid({"inner": {"x": 1}})
    assert v.is_valid({"inner": {"$type": "Inner", "x": 1}})
    assert not v.is_valid({"inner": {"$type": "Inner", "x": "one"}})
    assert not v.is_valid({"tags": []})


def test_start_event_schemas_accept_undeclared_fields() -> None:
    assert Draft202012Validator(fields_schema(StartEvent)).is_valid({"anything": [1, 2]})
    typed = Draft202012Validator(fields_schema(TickStart))
    assert typed.is_valid({"n": 3, "extra": "ok"})
    assert not typed.is_valid({"interval": 1.0})


def test_describe_lists_steps_events_and_the_graph() -> None:
    info = describe(Ticker)
    assert info.name == "Ticker" and info.class_path == "tests.workflows:Ticker"
    assert info.start_event == "TickStart" and info.stop_events == ["StopEvent"]
    assert [(s.name, s.accepts, s.emits) for s in info.steps] == [
        ("begin", ["TickStart"], ["Tick"]),
        ("tick", ["Tick"], ["Tick", "StopEvent"]),
    ]
    assert set(info.events) == {"TickStart", "Tick", "StopEvent"}
    # it survives the registry's JSON round trip unchanged
    assert msgspec.json.decode(msgspec.json.encode(info), type=WorkflowInfo) == info


def test_outside_events_need_no_producer() -> None:
    info = describe(Gate)
    assert "Approval" in info.accepted_events()
    assert info.events["Approval"]["required"] == ["approved"]

    class Plain(Event):
        ok: bool

    class Stuck(Workflow):
        @step
        async def a(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @step
        async def b(self, ev: Plain) -> StopEvent:
            return StopEvent()

    # (the graph is checked at validate() / run() since issue 18, as in llama-index-workflows)
    with pytest.raises(Exception, match="no step produces it"):
        Stuck().validate()


def test_deployment_file(tmp_path: Path) -> None:
    f = tmp_path / "jetloom.toml"
    f.write_text(
        '[control_plane]\nport = 0\n\n[[services]]\nname = "t"\nworkflow = "m:W"\nreplicas = 3\n'
    )
    dep = load_deployment(f)
    assert dep.root == str(tmp_path)
    assert [(s.name, s.workflow, s.replicas, s.num_workers) for s in dep.services] == [
        ("t", "m:W", 3, None)
    ]
    assert dep.control_plane.port == 0 and dep.nats.url is None

    f.write_text('[[services]]\nname = "t"\nworkflow = "m:W"\nreplica = 3\n')
    with pytest.raises(ValueError, match="replica"):
        load_deployment(f)
    f.write_text("[[services]\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_deployment(f)
    f.write_text('[[services]]\nname = "t"\nworkflow = "m:W"\nreplicas = -1\n')
    with pytest.raises(ValueError, match="replicas"):
        load_deployment(f)
