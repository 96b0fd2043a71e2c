"""``GET /runs`` newest first and the ``waiting`` status, on a real nats-server, control plane
and worker processes: a run whose step waits for a person is ``waiting`` in the listing (and
its filter) and in ``GET /runs/{id}``, which says what it waits for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx

from services.client import Client
from services.launcher import WorkerProcess
from tests.integration.procs import eventually
from tests.workflows import Reply

CHAIN = "tests.workflows:Chain3"
INTERVIEW = "tests.workflows:Interview"


async def test_runs_are_listed_newest_first_and_a_run_waiting_for_a_person_is_waiting(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(CHAIN)
    await start_worker(INTERVIEW)
    chains = []
    for text in ("a", "b c", "d e f"):
        handle = await client.start("Chain3", text=text)
        await asyncio.wait_for(handle.result(), 60)
        chains.append(handle.run_id)
    interview = await client.start("Interview", people=["ana", "bo"])
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:

        async def listing(**params: object) -> list[tuple[str, str]]:
            body = (await http.get("/runs", params=params)).json()  # type: ignore[arg-type]
            return [(r["run_id"], r["status"]) for r in body["runs"]]

        async def both_waiting() -> bool:
            return (await http.get(f"/runs/{interview.run_id}")).json()["status"] == "waiting" and len(
                (await http.get(f"/runs/{interview.run_id}")).json()["waiting_for"]
            ) == 2

        await eventually(both_waiting, what="both questions are waiting")
        newest = [(interview.run_id, "waiting")] + [(c, "completed") for c in reversed(chains)]
        assert await listing() == newest  # the default order: newest first
        assert await listing(order="newest") == newest
        assert await listing(order="oldest") == newest[::-1]
        assert await listing(status="waiting") == [(interview.run_id, "waiting")]
        assert await listing(status="running") == []  # a waiting run is not listed as running
        assert await listing(status="completed", order="oldest") == [(c, "completed") for c in chains]

        # pages of two, newest first: the cursor is the last run's seq, then None
        first = (await http.get("/runs", params={"limit": 2})).json()
        assert [r["run_id"] for r in first["runs"]] == [interview.run_id, chains[2]]
        assert first["next_cursor"] == first["runs"][-1]["seq"]
        second = (await http.get("/runs", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert [r["run_id"] for r in second["runs"]] == [chains[1], chains[0]]
        third = (await http.get("/runs", params={"limit": 2, "cursor": second["next_cursor"]})).json()
        assert third == {"runs": [], "next_cursor": None}
        bad = await http.get("/runs", params={"order": "sideways"})
        assert bad.status_code == 400

        view = (await http.get(f"/runs/{interview.run_id}")).json()
        waits = sorted(view["waiting_for"], key=lambda w: w["requirements"]["who"])
        assert [(w["step"], w["event"], w["requirements"]) for w in waits] == [
            ("ask", "Reply", {"who": "ana"}),
            ("ask", "Reply", {"who": "bo"}),
        ]
        for w in waits:
            assert w["wait_id"] == "w1" and w["trigger"] > 0 and w["seq"] > w["trigger"]
            since, until = datetime.fromisoformat(w["since"]), datetime.fromisoformat(w["timeout_at"])
            assert 590 < (until - since).total_seconds() <= 601  # timeout=600 in the step
            assert w["event_schema"]["properties"]["text"]["type"] == "string"

        await interview.send_event(Reply(who="bo", text="Bo"))

        async def one_left() -> bool:
            view = (await http.get(f"/runs/{interview.run_id}")).json()
            return [w["requirements"]["who"] for w in view["waiting_for"]] == ["ana"]

        await eventually(one_left, what="bo's wait resolved")
        assert await listing(status="waiting") == [(interview.run_id, "waiting")]
        await interview.send_event(Reply(who="ana", text="Ana"))
        assert await asyncio.wait_for(interview.result(), 60) == {"ana": "Ana", "bo": "Bo"}
        done = (await http.get(f"/runs/{interview.run_id}")).json()
        assert (done["status"], done["waiting_for"]) == ("completed", [])
        assert await listing(status="waiting") == []
        assert (await listing())[0] == (interview.run_id, "completed")
