"""Sessions over the HTTP API, the SDK and the CLI: each run starts with the state the previous
run of the session ended with."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.client import ApiError, Client, SyncClient, SyncRunHandle, SyncSessionHandle
from services.launcher import WorkerProcess
from tests.integration.procs import eventually
from tests.integration.test_cli import jetloom

TARGET = "tests.sessionflows:Accumulate"


async def test_a_session_of_three_runs_carries_the_state(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(TARGET)
    session = await client.create_session("Accumulate")
    assert [await session.run(add=n) for n in (1, 2, 3)] == [1, 3, 6]
    info = await session.info()
    assert len(info["runs"]) == 3 and info["runs_status"] == ["completed"] * 3
    last = await client.handle(info["runs"][-1]).status()
    assert last["state"] == {"total": 6, "history": [1, 2, 3]}
    assert session.id in {s["id"] for s in await client.sessions()}
    other = await client.create_session("Accumulate")  # sessions do not share state
    assert await other.run(add=10) == 10
    await session.delete()
    with pytest.raises(ApiError) as err:
        await client.session(session.id)
    assert err.value.status == 404
    assert (await client.handle(info["runs"][0]).status())["status"] == "completed", "runs stay"


async def test_the_blocking_client_hands_out_session_handles(
    api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(TARGET)

    def scripted() -> tuple[Any, ...]:
        with SyncClient(api) as c:
            session = c.create_session("Accumulate")
            first = session.run(add=2)
            again = c.session(session.id)  # the same session, looked up: a handle as well
            run = again.start(add=3)
            result = run.result()
            info = again.info()
            again.delete()
            return session, again, run, first, result, info

    session, again, run, first, result, info = await asyncio.to_thread(scripted)
    assert isinstance(session, SyncSessionHandle) and isinstance(again, SyncSessionHandle)
    assert isinstance(run, SyncRunHandle) and again.id == session.id and again.workflow == "Accumulate"
    assert (first, result) == (2, 5)
    assert info["runs"][-1] == run.run_id and info["runs_status"] == ["completed", "completed"]


async def test_next_run_is_refused_while_the_previous_runs(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    gone = await start_worker(TARGET)  # puts the workflow in the catalog
    gone.kill()
    await gone.stop(timeout=5)
    session = await client.create_session("Accumulate")
    first = await session.start(add=5)  # no worker now: it waits in JetStream
    with pytest.raises(ApiError) as err:
        await session.start(add=1)
    assert err.value.status == 409 and err.value.body["run_id"] == first.run_id
    await start_worker(TARGET)
    assert await first.result() == 5

    async def second_starts() -> bool:
        try:
            return await (await session.start(add=1)).result() == 6
        except ApiError as exc:
            assert exc.status == 409
            return False

    await eventually(second_starts, what="the second run starts after the first ended")


async def test_bad_session_requests_get_clear_errors(api: str, client: Client) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        # the workflow must have been served once; before that it is unknown
        r = await http.post("/sessions", json={"workflow": "NoSuchFlow"})
        assert r.status_code == 404 and r.json()["status"] == 404
        r = await http.post("/sessions", json={"flow": "x"})
        assert r.status_code == 422 and r.json()["field"] == "workflow"
        r = await http.post("/sessions", content=b"{not json")
        assert r.status_code in (400, 422) and "error" in r.json()
        for method, path in (("GET", "/sessions/nope"), ("POST", "/sessions/nope/runs"), ("DELETE", "/sessions/nope")):
            r = await http.request(method, path)
            assert r.status_code == 404 and "nope" in r.json()["error"], (method, path)
        r = await http.get("/sessions/bad.id")
        assert r.status_code in (400, 404) and "error" in r.json()


async def test_sessions_from_the_cli(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(TARGET)
    code, out, err = await jetloom(api, "sessions", "create", "Accumulate", "--json")
    assert code == 0, err
    sid = json.loads(out)["id"]
    for n in (4, 5):
        code, out, err = await jetloom(api, "sessions", "run", sid, "-f", f"add={n}", "--follow", "--json")
        assert code == 0, err
    assert json.loads(out.splitlines()[-1])["data"]["event"]["result"] == 9
    code, out, _ = await jetloom(api, "sessions", "show", sid, "--json")
    assert json.loads(out)["runs_status"] == ["completed", "completed"]
    code, out, _ = await jetloom(api, "sessions", "list")
    assert code == 0 and sid in out
    code, out, _ = await jetloom(api, "sessions", "delete", sid)
    assert code == 0
    code, _, err = await jetloom(api, "sessions", "show", sid)
    assert code == 1 and "404" in err
