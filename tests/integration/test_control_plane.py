"""The control plane, the registry and the SDK against a real nats-server, real uvicorn and real
worker processes."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
import pytest_asyncio

from engine import NoLiveWorkerWarning, StopEvent, WorkflowCancelledError
from engine.jetstream.registry import KvRegistry as Registry
from services.client import ApiError, Client, RunNotFound, SyncClient
from services.launcher import ControlPlaneServer, WorkerProcess
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually
from tests.workflows import Approval, Ticked, Ticker

ROOT = Path(__file__).resolve().parents[2]
CHAIN = "tests.workflows:Chain3"
TICKER = "tests.workflows:Ticker"
GATE = "tests.workflows:Gate"


async def served(client: Client, workflow: str, instances: int = 1, timeout: float = 30.0) -> None:
    """Wait (up to ``timeout`` seconds) until the control plane's registry view shows
    ``instances`` live processes."""

    async def check() -> bool:
        return any(
            w["name"] == workflow and w["instances"] == instances for w in await client.workflows()
        )

    await eventually(check, timeout=timeout, what=f"{workflow} served by {instances}")


# ---- registry -------------------------------------------------------------------------------------


async def test_registry_entries_appear_heartbeat_and_expire_after_kill(
    nats_url: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    w = await start_worker(CHAIN, "--registry-ttl", "2", "--service", "chains")
    await served(client, "Chain3")
    (entry,) = [e for e in await client.services() if e["pid"] == w.pid]
    assert entry["service"] == "chains"
    assert entry["ttl"] == 2.0
    assert [wf["name"] for wf in entry["workflows"]] == ["Chain3"]
    assert [s["name"] for s in entry["workflows"][0]["steps"]] == ["parse", "count", "finish"]

    async def refreshed() -> bool:
        now = [e for e in await client.services() if e["pid"] == w.pid]
        return bool(now) and now[0]["heartbeat_at"] > entry["heartbeat_at"]

    await eventually(refreshed, timeout=5, what="a heartbeat refreshes the entry")

    nc = await nats.connect(nats_url)
    try:
        reg = await Registry.open(nc)
        assert [e.pid for e in await reg.services()] == [w.pid]
        w.kill()

        async def expired() -> bool:
            return not await reg.services() and not await client.services()

        # a killed process deletes nothing: only the entry's TTL (2 s) can remove it
        await eventually(expired, timeout=15, what="the killed worker's entry expires")
        # the catalog outlives the processes: the workflow is still known, with no instance
        (wf,) = [x for x in await client.workflows() if x["name"] == "Chain3"]
        assert wf["instances"] == 0
    finally:
        await nc.close()


async def test_clean_shutdown_removes_the_entry_and_runs_queue_until_a_worker_comes(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    w = await start_worker(CHAIN, "--registry-ttl", "120")
    await served(client, "Chain3")
    assert await w.stop() == 0
    # at once, not after the TTL: an entry left behind would stay listed for 120 s
    await served(client, "Chain3", instances=0, timeout=5)

    with pytest.warns(NoLiveWorkerWarning, match="'Chain3'"):  # the run waits for a worker: said so
        handle = await client.start("Chain3", text="queued run here")
    assert handle.queued
    assert (await handle.status())["status"] == "running"
    await start_worker(CHAIN)
    assert await asyncio.wait_for(handle.result(), 30) == {"n": 3, "source": "queued run here"}


# ---- endpoints --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Served:
    """A control plane with a Chain3 and a Ticker worker process, shared by the endpoint tests
    (one per endpoint) of this module; ``done`` is a completed Chain3 run started with
    ``?wait=true``, ``named`` one started under the run id ``my-run-1``."""

    api: str
    client: Client
    http: httpx.AsyncClient
    done: dict[str, Any]
    named: httpx.Response


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served_api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with EmbeddedNats(port=0, store_dir=tmp_path_factory.mktemp("nats-store")) as server:
        cp = ControlPlaneServer(server.url, port=0, shutdown_grace=1.0)
        api = await cp.start()
        procs: list[WorkerProcess] = []
        try:
            for target in (CHAIN, TICKER):
                procs.append(await WorkerProcess.start(target, server.url, cwd=ROOT))
                await procs[-1].wait_ready()
            async with Client(api) as client, httpx.AsyncClient(base_url=api, timeout=30) as http:
                await served(client, "Chain3")
                await served(client, "Ticker")
                done = await http.post("/workflows/Chain3/runs", params={"wait": "true"}, json={"text": "a b c"})
                named = await http.post("/workflows/Chain3/runs", json={"text": "x"}, params={"run_id": "my-run-1"})
                assert await client.handle("my-run-1").result() == {"n": 1, "source": "x"}
                yield Served(api, client, http, {"status_code": done.status_code, **done.json()}, named)
        finally:
            for w in procs:
                w.kill()
                await w.stop(timeout=5)
            await cp.stop()


endpoint = pytest.mark.asyncio(loop_scope="module")


@endpoint
async def test_get_health(served_api: Served) -> None:
    health = (await served_api.http.get("/health")).json()
    assert health["status"] == "ok" and health["nats"] is True


@endpoint
async def test_get_openapi_schema(served_api: Served) -> None:
    schema = (await served_api.http.get("/schema/openapi.json")).json()
    assert schema["info"]["title"] == "jetloom control plane"
    assert "/workflows/{name}/runs" in schema["paths"]


@endpoint
async def test_get_workflow_detail(served_api: Served) -> None:
    detail = (await served_api.http.get("/workflows/Ticker")).json()
    assert detail["start_event"] == "TickStart"
    assert detail["events"]["TickStart"]["required"] == ["n"]
    assert {(e["source"], e["target"]) for e in detail["graph"]} == {
        ("_start", "begin"),
        ("begin", "tick"),
        ("tick", "tick"),
        ("tick", "_stop"),
    }


@endpoint
async def test_post_runs_with_wait_returns_the_result(served_api: Served) -> None:
    body = served_api.done
    assert body["status_code"] == 200
    assert body["status"] == "completed"
    assert body["result"] == {"n": 3, "source": "a b c"}
    assert body["state"] == {"source": "a b c"}


@endpoint
async def test_post_runs_with_a_run_id_is_idempotent(served_api: Served) -> None:
    started = served_api.named
    assert started.status_code == 201
    assert started.headers["location"] == "/runs/my-run-1"
    again = await served_api.http.post("/workflows/Chain3/runs", json={"text": "x"}, params={"run_id": "my-run-1"})
    assert again.status_code == 200 and again.json()["created"] is False


@endpoint
async def test_get_run(served_api: Served) -> None:
    view = (await served_api.http.get(f"/runs/{served_api.done['run_id']}")).json()
    assert view["status"] == "completed" and view["steps_completed"] == 3
    assert view["started_at"] <= view["ended_at"]
    # ?wait=true folded the run from the records the log handed it: the same fold as a read's
    for key in ("records", "last_seq", "state", "result", "steps_completed", "ended_at"):
        assert served_api.done[key] == view[key], key


@endpoint
async def test_post_runs_with_wait_and_a_run_id(served_api: Served) -> None:
    """A run id from the caller: the wait reads what is stored as well as what lands after, so a
    run waited for again after its end answers at once with the same view."""
    http = served_api.http
    params = {"wait": "true", "run_id": "waited-named-1"}
    first = await http.post("/workflows/Chain3/runs", json={"text": "p q r s"}, params=params)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["created"] is True and body["status"] == "completed"
    assert body["result"] == {"n": 4, "source": "p q r s"}
    view = (await http.get("/runs/waited-named-1")).json()
    assert (body["records"], body["last_seq"]) == (view["records"], view["last_seq"])
    again = await http.post("/workflows/Chain3/runs", json={"text": "p q r s"}, params=params)
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert {k: again.json()[k] for k in ("result", "records", "last_seq")} == {
        k: body[k] for k in ("result", "records", "last_seq")
    }


@endpoint
async def test_post_runs_with_wait_answers_202_when_the_run_outlasts_the_timeout(served_api: Served) -> None:
    http = served_api.http
    started = await http.post(
        "/workflows/Ticker/runs", json={"n": 400, "interval": 0.05}, params={"wait": "true", "timeout": "0.5"}
    )
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["status"] == "running" and body["ended_at"] is None and body["created"] is True
    assert body["records"] >= 2  # at least its start, folded while it was awaited
    cancelled = await http.post(f"/runs/{body['run_id']}/cancel", json={"reason": "test over"})
    assert cancelled.status_code == 202


async def _records(served_api: Served) -> list[dict[str, Any]]:
    return (await served_api.http.get(f"/runs/{served_api.done['run_id']}/events")).json()["records"]


@endpoint
async def test_get_run_events(served_api: Served) -> None:
    records = await _records(served_api)
    kinds = [(r["kind"], r["type"]) for r in records]
    assert kinds[:2] == [("sys", "RunStarted"), ("evt", "StartEvent")]
    assert kinds[-1] == ("sys", "RunCompleted")
    # parse and count commit a StepCompleted each; finish's commit is its RunCompleted alone
    assert kinds.count(("sys", "StepCompleted")) == 2
    assert [r["type"] for r in records if r.get("completes_step")] == ["RunCompleted"]
    assert kinds.count(("out", "Progress")) == 2
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    rid = served_api.done["run_id"]
    tail = (await served_api.http.get(f"/runs/{rid}/events", params={"after": records[-3]["seq"]})).json()
    assert [r["seq"] for r in tail["records"]] == [r["seq"] for r in records[-2:]]


@endpoint
async def test_get_run_stream(served_api: Served) -> None:
    records = await _records(served_api)
    async with served_api.http.stream("GET", f"/runs/{served_api.done['run_id']}/stream") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        text = (await resp.aread()).decode()
    ids = [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
    assert ids == [r["seq"] for r in records]  # one SSE event per record; ends with the run


@endpoint
async def test_get_runs_filtered(served_api: Served) -> None:
    http, rid = served_api.http, served_api.done["run_id"]
    listed = (await http.get("/runs", params={"workflow": "Chain3"})).json()
    assert {rid, "my-run-1"} <= {r["run_id"] for r in listed["runs"]}
    assert {r["workflow"] for r in listed["runs"]} == {"Chain3"}
    assert listed["next_cursor"] is None
    completed = (await http.get("/runs", params={"status": "completed"})).json()["runs"]
    assert {rid, "my-run-1"} <= {r["run_id"] for r in completed}
    assert {r["status"] for r in completed} == {"completed"}
    assert (await http.get("/runs", params={"status": "failed"})).json()["runs"] == []


@endpoint
async def test_post_run_cancel(served_api: Served) -> None:
    http = served_api.http
    ticking = await served_api.client.start(Ticker, n=200, interval=0.05)
    running = (await http.get("/runs", params={"status": "running"})).json()["runs"]
    assert ticking.run_id in [r["run_id"] for r in running]
    assert {r["status"] for r in running} == {"running"}
    cancelled = await http.post(f"/runs/{ticking.run_id}/cancel", json={"reason": "test"})
    assert cancelled.status_code == 202
    with pytest.raises(WorkflowCancelledError):
        await asyncio.wait_for(ticking.result(), 30)
    again = await http.post(f"/runs/{ticking.run_id}/cancel")
    assert again.status_code == 409 and again.json()["run_status"] == "cancelled"


async def test_an_idempotency_key_starts_one_run(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    """``POST /workflows/{name}/runs`` with an ``Idempotency-Key`` header: the same key names the
    same run, started once; another key starts another run."""
    await start_worker(CHAIN)
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        first = await http.post("/workflows/Chain3/runs", json={"text": "a b"}, headers={"Idempotency-Key": "order-17"})
        again = await http.post("/workflows/Chain3/runs", json={"text": "a b"}, headers={"Idempotency-Key": "order-17"})
        other = await http.post("/workflows/Chain3/runs", json={"text": "a b"}, headers={"Idempotency-Key": "order-18"})
        assert first.status_code == 201 and first.json()["created"] is True
        assert again.status_code == 200 and again.json()["created"] is False
        assert first.json()["run_id"] == again.json()["run_id"] == "order-17"
        assert other.status_code == 201 and other.json()["run_id"] == "order-18"
        assert await client.handle("order-17").result() == {"n": 2, "source": "a b"}
        records = (await http.get("/runs/order-17/events")).json()["records"]
        assert [r["type"] for r in records].count("RunStarted") == 1
        assert [r["type"] for r in records].count("StartEvent") == 1
        listed = (await http.get("/runs", params={"workflow": "Chain3"})).json()["runs"]
        assert sorted(r["run_id"] for r in listed) == ["order-17", "order-18"]


async def test_runs_are_paginated_with_a_cursor(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(CHAIN)
    ids = [(await client.start("Chain3", text=f"r{i}")).run_id for i in range(7)]
    seen: list[str] = []
    cursor: int | None = 0
    pages = 0
    while cursor is not None:
        page, cursor = await client.runs(workflow="Chain3", limit=3, cursor=cursor, order="oldest")
        seen += [r["run_id"] for r in page]
        pages += 1
    assert seen == ids
    assert pages == 3
    assert [r["run_id"] async for r in client.iter_runs(page=2, order="oldest")] == ids
    # the default order is newest first, paged the same way
    assert [r["run_id"] async for r in client.iter_runs(page=2)] == ids[::-1]
    page, cursor = await client.runs(workflow="Chain3", limit=3)
    assert [r["run_id"] for r in page] == ids[:-4:-1] and cursor == page[-1]["seq"]


async def test_send_event_from_outside_completes_a_waiting_run(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(GATE)
    handle = await client.start("Gate")

    async def asked() -> bool:
        return (await handle.status())["state"].get("asked") is True

    await eventually(asked, what="the ask step ran")
    sent = await handle.send_event(Approval(approved=True, by="ana"), idempotency_key="k1")
    assert sent["duplicate"] is False
    assert await asyncio.wait_for(handle.result(), 30) == {"approved": True, "by": "ana"}
    with pytest.raises(ApiError) as ended:
        await handle.send_event(type="Approval", data={"approved": False})
    assert ended.value.status == 409


# ---- replicas and streaming ---------------------------------------------------------------------------


async def test_two_replicas_start_on_one_stream_and_read_from_the_other(
    nats_url: str, api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    other = ControlPlaneServer(nats_url, port=0, shutdown_grace=1.0)
    await other.start()
    try:
        await start_worker(TICKER)
        async with Client(api) as a, Client(other.url) as b:
            started = await a.start(Ticker, n=5, interval=0.02)
            streamed = [ev async for ev in b.handle(started.run_id).stream()]
            assert streamed[:-1] == [Ticked(i=i) for i in range(5)]  # typed: Ticker is imported
            assert streamed[-1] == StopEvent(result=5)
            assert (await b.handle(started.run_id).status())["status"] == "completed"
            assert (await a.handle(started.run_id).status()) == (await b.handle(started.run_id).status())
            assert [r["run_id"] for r in (await b.runs())[0]] == [started.run_id]
    finally:
        await other.stop()


async def test_sse_reconnect_with_last_event_id_gets_every_record_once(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(TICKER)
    handle = await client.start(Ticker, n=30, interval=0.03)
    got: list[int] = []
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        last = None
        for _ in range(100):  # reconnect after every 7 events until the run's end
            headers = {"Last-Event-ID": str(last)} if last else {}
            ended = False
            async with http.stream("GET", f"/runs/{handle.run_id}/stream", headers=headers) as resp:
                assert resp.status_code == 200
                n = 0
                async for line in resp.aiter_lines():
                    if line.startswith("data: "):
                        record = orjson.loads(line[6:])
                        got.append(record["seq"])
                        last = record["seq"]
                        n += 1
                        if record["type"] == "RunCompleted":
                            ended = True
                        if n == 7:
                            break  # drop the connection mid-run
                else:
                    ended = True
            if ended:
                break
    records = await handle.events()
    assert got == [r["seq"] for r in records]
    assert len(got) == len(set(got))
    assert records[-1]["type"] == "RunCompleted"


async def test_sdk_stream_resumes_across_a_control_plane_restart(
    nats_url: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    # One listening socket, held by the test, for both lives of the control plane: the address
    # stays the test's throughout (no port released and bound again)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        cp = ControlPlaneServer(nats_url, sock=sock, shutdown_grace=0.2)
        url = await cp.start()
        assert url == f"http://127.0.0.1:{sock.getsockname()[1]}"
        await start_worker(TICKER)
        async with Client(url) as c:
            handle = await c.start(Ticker, n=40, interval=0.03)
            seen: list[dict[str, Any]] = []
            restarted = False
            async for record in handle.records():
                seen.append(record)
                if len(seen) == 10 and not restarted:
                    await cp.stop()  # the stream is cut; the SDK reconnects with Last-Event-ID
                    cp = ControlPlaneServer(nats_url, sock=sock, shutdown_grace=0.2)
                    await cp.start()
                    restarted = True
            assert restarted
            assert [r["seq"] for r in seen] == [r["seq"] for r in await handle.events()]
            assert seen[-1]["type"] == "RunCompleted"
        await cp.stop()


# ---- load -------------------------------------------------------------------------------------------


async def test_100_concurrent_runs_through_the_sdk(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(CHAIN)
    await start_worker(CHAIN)
    results = await asyncio.wait_for(
        asyncio.gather(*(client.run("Chain3", text=f"run {i} " + "w " * (i % 5)) for i in range(100))),
        120,
    )
    assert results == [{"n": 2 + i % 5, "source": f"run {i} " + "w " * (i % 5)} for i in range(100)]
    completed = [r async for r in client.iter_runs(status="completed")]
    assert len(completed) == 100


async def test_sync_client_twin(api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]) -> None:
    await start_worker(TICKER)

    def scripted() -> tuple[Any, list[Any], str]:
        with SyncClient(api) as c:
            result = c.run("Ticker", n=2, interval=0.01)
            handle = c.start(Ticker, n=3, interval=0.01)
            streamed = list(handle.stream())
            return result, streamed, c.handle(handle.run_id).status()["status"]

    result, streamed, status = await asyncio.to_thread(scripted)
    assert result == 2
    assert streamed == [Ticked(i=0), Ticked(i=1), Ticked(i=2), StopEvent(result=3)]
    assert status == "completed"


# ---- bad input ---------------------------------------------------------------------------------------


async def test_bad_input_gets_a_json_4xx_never_a_500(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(TICKER)
    await served(client, "Ticker")
    done = await client.start(Ticker, n=1, interval=0)
    await done.result()
    cases: list[tuple[str, str, dict[str, Any], int, str | None]] = [
        ("GET", "/workflows/Nope", {}, 404, None),
        ("POST", "/workflows/Nope/runs", {"json": {}}, 404, None),
        ("GET", "/runs/nope", {}, 404, None),
        ("GET", "/runs/nope/events", {}, 404, None),
        ("GET", "/runs/nope/stream", {}, 404, None),
        ("POST", "/runs/nope/events", {"json": {"type": "Tick", "data": {}}}, 404, None),
        ("POST", "/runs/nope/cancel", {}, 404, None),
        ("GET", "/runs/bad.id", {}, 400, None),
        ("POST", "/workflows/Ticker/runs", {"json": {}}, 422, "n"),
        ("POST", "/workflows/Ticker/runs", {"json": {"n": "three"}}, 422, "n"),
        ("POST", "/workflows/Ticker/runs", {"json": {"n": 1, "interval": [1]}}, 422, "interval"),
        ("POST", "/workflows/Ticker/runs", {"json": [1, 2]}, 422, None),
        ("POST", "/workflows/Ticker/runs", {"content": b"{not json"}, 400, None),
        ("POST", "/workflows/Ticker/runs", {"content": b"{" + b" " * (2 << 20) + b"}"}, 413, None),
        ("POST", "/workflows/Ticker/runs?run_id=a.b", {"json": {"n": 1}}, 400, None),
        ("POST", f"/runs/{done.run_id}/events", {"json": {"data": {}}}, 422, "type"),
        ("POST", f"/runs/{done.run_id}/events", {"json": {"type": "Nope"}}, 422, "type"),
        ("POST", f"/runs/{done.run_id}/events", {"json": {"type": "Tick", "data": {"i": "x"}}}, 422, "i"),
        ("POST", f"/runs/{done.run_id}/events", {"json": {"type": "Tick", "data": {"i": 1, "n": 1, "interval": 0}, "step": "zzz"}}, 422, "step"),
        ("POST", f"/runs/{done.run_id}/events", {"json": {"type": "Tick", "data": {"i": 1, "n": 1, "interval": 0}}}, 409, None),
        ("POST", f"/runs/{done.run_id}/events", {"content": b""}, 400, None),
        ("POST", f"/runs/{done.run_id}/cancel", {}, 409, None),
        ("GET", "/runs?limit=0", {}, 400, "limit"),
        ("GET", "/runs?limit=abc", {}, 400, "limit"),
        ("GET", "/runs?status=bogus", {}, 400, "status"),
        ("GET", f"/runs/{done.run_id}/stream", {"headers": {"Last-Event-ID": "x"}}, 400, None),
    ]
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        for method, path, kwargs, status, field in cases:
            resp = await http.request(method, path, **kwargs)
            assert resp.status_code == status, (method, path, resp.status_code, resp.text)
            body = resp.json()
            assert body["status"] == status and isinstance(body["error"], str) and body["error"]
            if field is not None:
                assert body.get("field") == field, (path, body)
        missing = (await http.post("/workflows/Ticker/runs", json={})).json()
        assert "'n' is a required property" in missing["error"]
    with pytest.raises(RunNotFound):
        await client.handle("nope").status()


async def test_a_worker_the_registry_view_has_not_seen_yet_still_counts_as_live(nats_url: str) -> None:
    """A start must not call its run queued (nor the SDK warn that nobody serves it) only because
    the control plane's registry view lags the registry: when the view lists no live process for
    the workflow, the control plane asks the registry itself. (Here the view is stopped, so it
    can never catch up: the entry written after that is found by the registry read alone.)"""
    from engine.jetstream.registry import KvRegistry
    from engine.ports.registry import ServiceEntry, StepInfo, WorkflowInfo
    from services.control.app import ControlPlane

    cp = ControlPlane(nats_url)
    await cp.start()
    nc = await nats.connect(nats_url)
    try:
        assert cp.view is not None
        await cp.view.stop()
        step = StepInfo(name="go", accepts=["StartEvent"], emits=["StopEvent"], num_workers=1)
        info = WorkflowInfo(
            name="Lagging", class_path="tests:Lagging", start_event="StartEvent", stop_events=["StopEvent"],
            steps=[step], events={"StartEvent": {"type": "object"}}, graph=[],
        )  # fmt: skip
        entry = ServiceEntry(
            service="svc", instance="i1", host="h", pid=1, version="0", workflows=[info],
            started_at="2026-01-01T00:00:00.000Z", ttl=30.0,
        )  # fmt: skip
        assert await cp.serving("Lagging") == []  # nobody yet
        await (await KvRegistry.open(nc)).put_service(entry)
        assert cp.view.serving("Lagging") == []  # the view never learns of it
        # the empty answer above is reused for a second at most (ControlPlane.NONE_SEEN_FOR)
        async def found() -> bool:
            return [e.instance for e in await cp.serving("Lagging")] == ["i1"]

        await eventually(found, timeout=5, what="the registry read finds the new entry")
    finally:
        await nc.close()
        await cp.stop()
