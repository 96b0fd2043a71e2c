"""Nothing after a run's end, and no id that makes the server send ``-ERR``, with a real
nats-server, a worker process and the HTTP API: a run that completes (or is cancelled) before its
``run_timeout`` has its timeout schedule removed, so the server never appends the timeout's
``RunFailed`` after the end; a run id too long for a subject is refused by ``NatsClient.start``
before it reaches NATS, and the connection stays usable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from engine.jetstream.log import JetStreamLog
from engine.model.errors import WorkflowCancelledError, WorkflowTimeoutError
from engine.wire.codec import subject_parts
from engine.wire.subjects import NAME_MAX
from services.client import Client
from services.launcher import WorkerProcess
from services.nats_client import NatsClient
from tests.workflows import Chain3

Start = Callable[..., Awaitable[WorkerProcess]]
HELD = "tests.semantics_workflows:Held"
RUN_TIMEOUT_S = 1.5


async def _kinds(log: JetStreamLog, run_id: str) -> list[str]:
    """``kind.type`` of every record of a ``Held`` run, the pending schedule included."""
    out = []
    for raw in await log.read("Held", run_id):
        parts = subject_parts(raw.subject)
        assert parts is not None
        out.append(f"{parts.kind}.{parts.type}")
    return out


async def test_a_run_that_ended_before_its_timeout_gets_nothing_after_its_end(
    client: Client, start_worker: Start, js_log: JetStreamLog, tmp_path: Path
) -> None:
    await start_worker(HELD)
    done, held, cancelled = (tmp_path / n for n in ("done", "held", "cancelled"))
    for d in (done, held, cancelled):
        d.mkdir()
    (done / "go").write_text("1")  # the step of this run ends at once

    quick = await client.start("Held", dir=str(done), run_timeout=RUN_TIMEOUT_S)
    assert await asyncio.wait_for(quick.result(), 15) == "done"
    to_cancel = await client.start("Held", dir=str(cancelled), run_timeout=RUN_TIMEOUT_S)
    await to_cancel.cancel("not needed")
    with pytest.raises(WorkflowCancelledError):
        await asyncio.wait_for(to_cancel.result(), 15)

    # A run started last, with the same timeout, that does not end: when the server has fired
    # its timeout, it has passed the deadlines of the two runs above (scheduled earlier).
    marker = await client.start("Held", dir=str(held), run_timeout=RUN_TIMEOUT_S)
    with pytest.raises(WorkflowTimeoutError):
        await asyncio.wait_for(marker.result(), 30)
    assert (await _kinds(js_log, marker.run_id))[-1] == "sys.RunFailed"

    ended = {quick.run_id: "sys.RunCompleted", to_cancel.run_id: "sys.RunCancelled"}
    for run_id, end in ended.items():
        kinds = await _kinds(js_log, run_id)
        assert kinds[-1] == end, (run_id, kinds)  # nothing follows the end
        assert "sys.RunFailed" not in kinds and not any(k.startswith("sch.") for k in kinds), kinds
        view = await client.handle(run_id, "Held").status()
        assert view["status"] == end.removeprefix("sys.Run").lower()


async def test_a_run_id_too_long_for_a_subject_is_refused_and_the_connection_stays_usable(
    nats_url: str, start_worker: Start
) -> None:
    await start_worker("tests.workflows:Chain3")
    async with await NatsClient.connect(nats_url) as nc:
        for bad in ("r" * 5_000, "r" * (NAME_MAX + 1), "a.b", "a b", "run\n"):
            with pytest.raises(ValueError, match="run id"):
                await nc.start(Chain3, run_id=bad, text="a b")
            with pytest.raises(ValueError, match="run id"):
                nc.attach(Chain3, bad)
        with pytest.raises(ValueError, match="workflow"):
            nc.attach("w" * 5_000, "r1")
        assert not nc.log.nc.is_closed
        # the longest id allowed goes through the server, on the same connection
        longest = "r" * NAME_MAX
        handler = await nc.start(Chain3, run_id=longest, text="one two three")
        result = await asyncio.wait_for(handler, 30)
        assert result["n"] == 3 and handler.run_id == longest
        assert nc.log.nc.is_connected


async def test_a_name_with_a_trailing_newline_gets_400_and_the_control_plane_stays_ready(api: str) -> None:
    # Python's ``$`` matches before a trailing newline; the shared token pattern does not let it in
    async with httpx.AsyncClient(base_url=api) as http:
        for path in ("/runs/abc%0A", "/runs/abc%0A/events", "/workflows/Held%0A", "/workflows/Held%0A/runs"):
            method = "POST" if path.endswith("/runs") else "GET"
            r = await http.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 400, (path, r.status_code, r.text)
            assert r.json()["status"] == 400
        r = await http.post("/workflows/Held/runs", params={"run_id": "abc\n"}, json={})
        assert r.status_code == 400, r.text
        assert (await http.get("/ready")).status_code == 200
