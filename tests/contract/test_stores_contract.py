"""One contract per storage port beside the log, two implementations each: the memory backend
and the NATS backend (real nats-server). Snapshots, the registry, sessions, the run index (and the
subject scans it reads) and the backend itself must behave the same on both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import orjson
import pytest

from engine.jetstream.backend import NatsBackend
from engine.memory.backend import MemoryBackend
from engine.model.records import OutMessage
from engine.ports.backend import Backend
from engine.ports.registry import ServiceEntry, StepInfo, WorkflowInfo
from engine.ports.sessions import SessionConflictError, SessionNotFoundError
from engine.state.fold import RunState
from engine.state.snapshots import encode_snapshot, snapshot_seq
from engine.wire.subjects import run_subject
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually

WF = "Contract"
OTHER = "Other"


@pytest.fixture(params=["memory", "nats"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        mem = MemoryBackend()
        yield mem
        await mem.close()
        return
    async with EmbeddedNats(port=0, store_dir=tmp_path / "nats") as server:
        nats_backend = await NatsBackend.connect(server.url)
        try:
            yield nats_backend
        finally:
            await nats_backend.close()


def msg(workflow: str, run: str, kind: str, type_name: str, body: object = None) -> OutMessage:
    return OutMessage(run_subject("jetloom", workflow, run, kind, type_name), orjson.dumps(body or {}), {})


def info(name: str) -> WorkflowInfo:
    step = StepInfo(name="go", accepts=["StartEvent"], emits=["StopEvent"], num_workers=1)
    return WorkflowInfo(
        name=name,
        class_path=f"tests:{name}",
        start_event="StartEvent",
        stop_events=["StopEvent"],
        steps=[step],
        events={"StartEvent": {"type": "object"}},
        graph=[],
    )


def service(instance: str, *workflows: str, ttl: float = 30.0) -> ServiceEntry:
    return ServiceEntry(
        service="svc",
        instance=instance,
        host="h",
        pid=1,
        version="0",
        workflows=[info(w) for w in workflows],
        started_at="2026-01-01T00:00:00.000Z",
        ttl=ttl,
    )


def snapshot(seq: int) -> bytes:
    st = RunState(WF, "r")
    st.seq = seq
    return encode_snapshot(st)


# ---- the backend ------------------------------------------------------------------------------


async def test_a_backend_is_connected_and_ready_until_closed(backend: Backend) -> None:
    assert backend.is_connected
    backend.check_connected()
    readiness = await backend.ready(2.0)
    assert readiness.ready and readiness.reason is None and readiness.stream
    closed = backend.closed()
    assert not closed.done()
    await backend.close()
    assert isinstance(await closed, Exception)
    assert not backend.is_connected
    with pytest.raises(Exception):  # noqa: B017,PT011  (each backend raises its own "closed")
        backend.check_connected()
    assert not (await backend.ready(2.0)).ready


async def test_a_backends_stores_are_opened_once(backend: Backend) -> None:
    assert await backend.snapshots() is await backend.snapshots()
    assert await backend.registry() is await backend.registry()
    assert await backend.sessions() is await backend.sessions()


# ---- snapshots --------------------------------------------------------------------------------


async def test_snapshots_never_move_backwards(backend: Backend) -> None:
    store = await backend.snapshots()
    assert await store.get(WF, "r") is None
    assert await store.put(WF, "r", snapshot(5))
    assert await store.put(WF, "r", snapshot(9))
    assert not await store.put(WF, "r", snapshot(5))
    assert not await store.put(WF, "r", snapshot(9))
    assert snapshot_seq(await store.get(WF, "r") or b"") == 9
    assert await store.get(WF, "other") is None
    await store.delete(WF, "r")
    await store.delete(WF, "r")  # (nothing there: no error)
    assert await store.get(WF, "r") is None
    assert await store.put(WF, "r", snapshot(5))


# ---- registry ---------------------------------------------------------------------------------


async def test_the_catalog_keeps_the_latest_description_of_each_workflow(backend: Backend) -> None:
    registry = await backend.registry()
    assert await registry.workflow(WF) is None
    assert await registry.workflows() == []
    await registry.put_workflow(info(WF))
    await registry.put_workflow(info(OTHER))
    changed = msgspec.structs.replace(info(WF), class_path="x:Y")
    await registry.put_workflow(changed)
    assert await registry.workflow(WF) == changed
    assert [w.name for w in await registry.workflows()] == [WF, OTHER]  # (sorted by name)


async def test_services_are_listed_sorted_until_removed(backend: Backend) -> None:
    registry = await backend.registry()
    b, a = service("b", WF), service("a", WF, OTHER)
    await registry.put_service(b)
    await registry.put_service(a)
    assert a.heartbeat_at and b.heartbeat_at  # stamped by the put
    listed = await registry.services()
    assert [e.key for e in listed] == ["svc.a", "svc.b"]
    assert listed[0] == a
    await registry.remove_service(a)
    assert [e.key for e in await registry.services()] == ["svc.b"]


async def test_a_service_entry_expires_after_its_ttl(backend: Backend) -> None:
    registry = await backend.registry()
    await registry.put_service(service("short", WF, ttl=1.0))
    await registry.put_service(service("long", WF, ttl=60.0))

    async def expired() -> bool:
        return [e.instance for e in await registry.services()] == ["long"]

    await eventually(expired, timeout=10, what="the 1 s entry expires, the 60 s one stays")


async def test_a_registry_view_follows_the_registry(backend: Backend) -> None:
    registry = await backend.registry()
    await registry.put_workflow(info(WF))
    a = service("a", WF)
    await registry.put_service(a)
    view = await registry.view()
    try:
        assert set(view.services) == {"svc.a"} and set(view.workflows) == {WF}
        assert [e.instance for e in view.serving(WF)] == ["a"]
        assert view.serving(OTHER) == []
        await registry.put_service(service("b", OTHER))
        await registry.put_workflow(info(OTHER))

        async def added() -> bool:
            return set(view.services) == {"svc.a", "svc.b"} and OTHER in view.workflows

        await eventually(added, timeout=5, what="the view sees the new entries")
        assert [e.instance for e in view.serving(OTHER)] == ["b"]
        await registry.remove_service(a)

        async def removed() -> bool:
            return set(view.services) == {"svc.b"}

        await eventually(removed, timeout=5, what="the view drops the removed entry")
        assert await view.workflow(WF) == info(WF)
        assert await view.workflow("Nope") is None
    finally:
        await view.stop()


# ---- sessions ---------------------------------------------------------------------------------


async def test_a_session_is_created_read_extended_and_deleted(backend: Backend) -> None:
    sessions = await backend.sessions()
    first = await sessions.create(WF, "s1")
    assert (first.id, first.workflow, first.runs) == ("s1", WF, [])
    assert first.created_at.endswith("Z")
    generated = await sessions.create(WF)
    assert len(generated.id) == 32
    got, revision = await sessions.get("s1")
    assert got == first and revision > 0
    updated = await sessions.add_run(got, revision, "run-1")
    assert updated.runs == ["run-1"]
    got, later = await sessions.get("s1")
    assert got.runs == ["run-1"] and later > revision
    oldest_first = sorted([first, generated], key=lambda s: (s.created_at, s.id))  # (ms resolution)
    assert [s.id for s in await sessions.list()] == [s.id for s in oldest_first]
    await sessions.delete("s1")
    with pytest.raises(SessionNotFoundError):
        await sessions.get("s1")
    with pytest.raises(SessionNotFoundError):
        await sessions.delete("s1")
    assert [s.id for s in await sessions.list()] == [generated.id]


async def test_session_writes_are_compare_and_set(backend: Backend) -> None:
    sessions = await backend.sessions()
    await sessions.create(WF, "s")
    with pytest.raises(SessionConflictError):
        await sessions.create(WF, "s")
    session, revision = await sessions.get("s")
    await sessions.add_run(session, revision, "a")
    with pytest.raises(SessionConflictError):  # read before the first add: stale
        await sessions.add_run(session, revision, "b")
    assert (await sessions.get("s"))[0].runs == ["a"]
    with pytest.raises(SessionNotFoundError):
        await sessions.get("nope")


# ---- the run index ----------------------------------------------------------------------------


async def _runs(backend: Backend) -> dict[str, int]:
    """Runs in every state; returns the sequence of each run's last record."""
    log = backend.log
    last: dict[str, int] = {}

    async def run(run_id: str, *rest: tuple[str, str, object], workflow: str = WF) -> None:
        messages = [msg(workflow, run_id, "sys", "RunStarted"), *(msg(workflow, run_id, k, t, b) for k, t, b in rest)]
        res = await log.append(messages)
        last[run_id] = res.last_seq or 0

    await run("running", ("evt", "Go", {}))
    await run("completed", ("sys", "RunCompleted", {}))
    await run("failed", ("sys", "StepFailed", {"step": "go"}))
    await run("handled", ("sys", "StepFailed", {"step": "go", "handled_by": "fix"}))
    await run("retried", ("sys", "StepFailed", {"step": "go"}), ("cmd", "go", {"reason": "manual"}))
    await run("cancelled", ("sys", "RunCancelled", {}))
    await run("elsewhere", workflow=OTHER)
    return last


async def test_the_run_index_lists_runs_in_start_order_with_their_status(backend: Backend) -> None:
    await _runs(backend)
    runs = backend.runs
    found, cursor = await runs.list_runs()
    assert cursor is None
    assert [(r.run_id, r.workflow, r.status) for r in found] == [
        ("running", WF, "running"),
        ("completed", WF, "completed"),
        ("failed", WF, "failed"),
        ("handled", WF, "running"),
        ("retried", WF, "running"),
        ("cancelled", WF, "cancelled"),
        ("elsewhere", OTHER, "running"),
    ]
    assert all(r.started_at and r.started_at.endswith("Z") for r in found)
    assert [r.run_id for r in found if r.ended_at] == ["completed", "failed", "cancelled"]
    assert [r.run_id for r in (await runs.list_runs(workflow=OTHER))[0]] == ["elsewhere"]
    assert [r.run_id for r in (await runs.list_runs(status="failed"))[0]] == ["failed"]
    pages, cursor = [], 0
    while True:
        page, nxt = await runs.list_runs(limit=3, cursor=cursor)
        pages.append([r.run_id for r in page])
        if nxt is None:
            break
        cursor = nxt
    assert sum(pages, []) == [r.run_id for r in found]
    assert [len(p) for p in pages[:2]] == [3, 3]


async def test_the_run_index_finds_a_runs_workflow_and_its_end(backend: Backend) -> None:
    last = await _runs(backend)
    runs = backend.runs
    assert await runs.find_workflow("completed") == WF
    assert await runs.find_workflow("elsewhere") == OTHER
    assert await runs.find_workflow("never") is None
    assert await runs.terminal_seq(WF, "completed") == last["completed"]
    assert await runs.terminal_seq(WF, "failed") == last["failed"]
    assert await runs.terminal_seq(WF, "cancelled") == last["cancelled"]
    for open_run in ("running", "handled", "retried"):
        assert await runs.terminal_seq(WF, open_run) is None, open_run


async def test_a_rolled_back_end_is_no_end(backend: Backend) -> None:
    log = backend.log
    started = await log.append([msg(WF, "r", "sys", "RunStarted")])
    await log.append([msg(WF, "r", "sys", "RunCompleted")])
    assert await backend.runs.terminal_seq(WF, "r") is not None
    await log.append([msg(WF, "r", "sys", "RolledBack", {"to_seq": started.last_seq})])
    assert await backend.runs.terminal_seq(WF, "r") is None
    again = await log.append([msg(WF, "r", "sys", "RunCancelled")])
    assert await backend.runs.terminal_seq(WF, "r") == again.last_seq


async def test_subject_scans_match_wildcards_in_sequence_order(backend: Backend) -> None:
    await _runs(backend)
    log = backend.log
    assert hasattr(log, "scan") and hasattr(log, "last_per_subject")
    started = await log.scan("jetloom.run.*.*.sys.RunStarted", limit=100)
    assert [r.subject.split(".")[3] for r in started][:3] == ["running", "completed", "failed"]
    assert len(started) == 7 and [r.seq for r in started] == sorted(r.seq for r in started)
    after = await log.scan("jetloom.run.*.*.sys.RunStarted", after_seq=started[1].seq, limit=2)
    assert after == started[2:4]
    assert [r.subject for r in await log.scan(f"jetloom.run.{WF}.retried.>", limit=100)] == [
        f"jetloom.run.{WF}.retried.sys.RunStarted",
        f"jetloom.run.{WF}.retried.sys.StepFailed",
        f"jetloom.run.{WF}.retried.cmd.go",
    ]
    await log.append([msg(WF, "completed", "sys", "RunCompleted", {"again": True})])
    lasts = await log.last_per_subject([f"jetloom.run.{WF}.completed.sys.*", f"jetloom.run.{OTHER}.>"])
    assert [r.subject for r in lasts] == [
        f"jetloom.run.{WF}.completed.sys.RunStarted",
        f"jetloom.run.{OTHER}.elsewhere.sys.RunStarted",
        f"jetloom.run.{WF}.completed.sys.RunCompleted",
    ]
    assert orjson.loads(lasts[-1].data) == {"again": True}
