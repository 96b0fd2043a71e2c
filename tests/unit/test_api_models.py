"""The API's bodies (services.api_models): the SDK can import them without Litestar or nats-py,
and the ones that show a stored value (a registry entry, a session, a run of the run index) have
exactly its fields, so the stored value and its API shape cannot drift apart."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest

from engine.model.records import RawRecord
from engine.ports.registry import ServiceEntry
from engine.ports.runindex import RunSummary
from engine.ports.sessions import Session
from engine.runtime.describe import WorkflowInfo
from engine.wire.headers import H_CLASS, H_STEP, H_TRIGGER
from services import api_models as api
from services.control.queries import record_view


def field_names(struct: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(struct)}


@pytest.mark.parametrize(
    ("shown", "stored"),
    [(api.ServiceView, ServiceEntry), (api.SessionView, Session), (api.RunLine, RunSummary)],
    ids=lambda t: t.__name__,
)
def test_api_shapes_of_stored_values_have_their_fields(shown: type[msgspec.Struct], stored: type[msgspec.Struct]) -> None:
    assert field_names(shown) == field_names(stored)


def test_workflow_view_is_the_catalog_entry_and_who_serves_it() -> None:
    assert field_names(api.WorkflowView) == field_names(WorkflowInfo) | {"instances", "services"}


def test_sdk_imports_neither_litestar_nor_nats() -> None:
    code = (
        "import sys, services.api_models, services.client; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('litestar', 'nats')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_optional_keys_are_left_out_not_null() -> None:
    raw = msgspec.json.encode(api.RecordView(seq=3, time=None, kind="evt", type="Go", subject="s", data={}))
    assert msgspec.json.decode(raw) == {"seq": 3, "time": None, "kind": "evt", "type": "Go", "subject": "s", "data": {}}
    links = msgspec.convert({"self": "/runs/r", "events": "/runs/r/events", "stream": "/runs/r/stream"}, api.RunLinks)
    assert msgspec.to_builtins(links) == {"self": "/runs/r", "events": "/runs/r/events", "stream": "/runs/r/stream"}


def test_record_view_round_trips_through_its_struct() -> None:
    raw = RawRecord(
        subject="jetloom.run.Wf.r1.out.Progress",
        seq=7,
        data=b'{"pct": 50}',
        headers={H_STEP: "work", H_TRIGGER: "3", H_CLASS: "m:Progress"},
        time_ns=1_700_000_000_000_000_000,
    )
    view = record_view(raw)
    assert msgspec.to_builtins(msgspec.convert(view, api.RecordView)) == view
