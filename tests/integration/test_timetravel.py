"""Rollback, fork and state at N through the HTTP API, the SDK and the CLI, with a real worker
process on a real nats-server; logs checked record by record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.client import ApiError, Client, RunHandle
from services.launcher import WorkerProcess
from tests.integration.procs import eventually
from tests.integration.test_cli import jetloom

CHAIN3 = "tests.workflows:Chain3"
CHAIN = [
    "sys.RunStarted", "evt.StartEvent",
    "sys.StepCompleted", "evt.Parsed", "out.Progress",
    "sys.StepCompleted", "evt.Counted", "out.Progress",
    "sys.RunCompleted",  # finish's whole commit (a one-message commit, engine.wire.commit)
]  # fmt: skip


def shape(records: list[dict[str, Any]]) -> list[str]:
    return [f"{r['kind']}.{r['type']}" for r in records]


async def finished(client: Client) -> tuple[RunHandle, list[dict[str, Any]]]:
    handle = await client.start("Chain3", text="a b c")
    assert await asyncio.wait_for(handle.result(), 60) == {"n": 3, "source": "a b c"}
    records = await handle.events()
    assert shape(records) == CHAIN
    return handle, records


async def test_state_at_rollback_and_fork_over_http(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(CHAIN3)
    handle, before = await finished(client)
    seq = [r["seq"] for r in before]

    # state at N: after parse's commit, count is pending
    at = await handle.state(at=seq[4])
    assert at["status"] == "running" and at["state"] == {"source": "a b c"}
    assert at["done"] == [[seq[1], "parse"]] and at["pending"] == [[seq[3], "count"]]
    now = await handle.state()
    assert now["status"] == "completed" and now["pending"] == [] and now["epoch"] == 0

    # rollback to the same point: count and finish run again
    res = await handle.rollback(seq[4], reason="redo count")
    assert res["resumed"] == [{"trigger": seq[3], "step": "count"}] and res["epoch"] == 1

    async def completed_again() -> bool:
        records = await handle.events()
        return shape(records).count("sys.RunCompleted") == 2

    await eventually(completed_again, what="the run completes again after the rollback")
    after = await handle.events()
    assert after[: len(CHAIN)] == before  # history stays readable, unchanged
    new = after[len(CHAIN) :]
    assert shape(new) == [
        "sys.RolledBack", "cmd.count",
        "sys.StepCompleted", "evt.Counted", "out.Progress",
        "sys.RunCompleted",
    ]  # fmt: skip
    assert new[0]["seq"] == res["marker_seq"]
    assert new[0]["data"] == {"to_seq": seq[4], "epoch": 1, "reason": "redo count", "pending": [[seq[3], "count"]]}
    assert new[1]["data"]["reason"] == "rollback" and new[1]["trigger"] == seq[3]
    assert (new[2]["data"]["step"], new[2]["data"]["trigger"]) == ("count", seq[3])
    assert (new[5]["data"]["step"], new[5]["data"]["trigger"]) == ("finish", new[3]["seq"])
    assert new[5]["completes_step"] and new[5]["worker"]
    view = await handle.status()
    assert view["status"] == "completed" and view["result"] == {"n": 3, "source": "a b c"}
    assert view["steps_completed"] == 3
    state_now = await handle.state()
    assert state_now["epoch"] == 1 and state_now["rolled_back"] == [[seq[4], res["marker_seq"]]]

    # a point the rollback undid cannot be forked from
    with pytest.raises(ApiError, match="undone by an earlier rollback"):
        await handle.fork(seq[7])
    # fork after the rerun count's commit: only the records that count are copied (the Resume
    # among them, remapped); the fork runs finish; the original is untouched
    forked = await handle.fork(new[4]["seq"], run_id=f"{handle.run_id}-fork")
    assert forked.run_id == f"{handle.run_id}-fork"
    assert await asyncio.wait_for(forked.result(), 60) == {"n": 3, "source": "a b c"}
    copy = await forked.events()
    assert shape(copy) == CHAIN[:5] + [
        "cmd.count", "sys.StepCompleted", "evt.Counted", "out.Progress",
        "sys.RunForked", "sys.RunCompleted",
    ]  # fmt: skip
    assert copy[0]["data"]["forked_from"] == handle.run_id and copy[0]["data"]["forked_at"] == new[4]["seq"]
    for old, cp in zip(before[:5] + new[1:5], copy[:9], strict=True):
        assert cp["seq"] > after[-1]["seq"] and cp["subject"].split(".")[3] == forked.run_id
        if old["kind"] in ("evt", "out"):
            assert cp["data"] == old["data"]
    start, parsed, counted = copy[1]["seq"], copy[3]["seq"], copy[7]["seq"]
    assert copy[2]["data"]["trigger"] == start and copy[3]["trigger"] == start
    assert copy[5]["data"] == {**new[1]["data"], "trigger": parsed} and copy[5]["trigger"] == parsed
    assert copy[6]["data"]["trigger"] == parsed and copy[7]["trigger"] == parsed
    assert copy[9]["data"] == {"from_run": handle.run_id, "at_seq": new[4]["seq"], "records": 9}
    assert (copy[10]["data"]["step"], copy[10]["data"]["trigger"]) == ("finish", counted)
    assert await handle.events() == after


async def test_time_travel_errors_are_clear(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(CHAIN3)
    handle, records = await finished(client)
    seq = [r["seq"] for r in records]
    cases = [
        (handle.rollback(10**9), 422, "not a record of the run"),
        (handle.rollback(seq[3]), 422, "inside commit"),
        (handle.rollback(seq[-1]), 409, "already ended"),
        (handle.fork(seq[0]), 422, "before the run's start event"),
        (handle.fork(seq[4], run_id=handle.run_id), 409, "already exists"),
        (handle.state(at=0), 422, "before the run's first record"),
        (client.handle("nosuchrun").rollback(1), 404, "no run"),
    ]
    for call, status, text in cases:
        with pytest.raises(ApiError) as info:
            await call
        assert info.value.status == status and text in info.value.reason, info.value.body
        assert info.value.body["status"] == status
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        resp = await http.post(f"/runs/{handle.run_id}/rollback", json={"to_seq": "3"})
        assert resp.status_code == 422 and resp.json()["field"] == "to_seq"
        resp = await http.post(f"/runs/{handle.run_id}/fork", json={"at_seq": seq[4], "run_id": "bad id"})
        assert resp.status_code == 400 and "run id" in resp.json()["error"]


async def test_cli_state_fork_and_rollback(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(CHAIN3)
    handle, records = await finished(client)
    seq = [r["seq"] for r in records]
    code, out, err = await jetloom(api, "state", handle.run_id, "--at", str(seq[4]), "--json")
    assert code == 0, err
    view = json.loads(out)
    assert view["pending"] == [[seq[3], "count"]] and view["state"] == {"source": "a b c"}

    code, out, err = await jetloom(api, "fork", handle.run_id, "--at", str(seq[4]))
    assert code == 0, err
    fork_id = out.strip()
    assert await asyncio.wait_for(client.handle(fork_id).result(), 60) == {"n": 3, "source": "a b c"}

    code, out, err = await jetloom(api, "rollback", handle.run_id, "--to", str(seq[3]))
    assert code == 1 and "inside commit" in err and "HTTP 422" in err
