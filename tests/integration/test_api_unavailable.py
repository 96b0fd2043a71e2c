"""While NATS is down the control plane answers 503 with ``Retry-After`` (never a 500 with a
traceback), ``/ready`` says why, ``/health`` stays 200; when NATS is back so is the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from services.client import ApiError, Client
from services.control.errors import RETRY_AFTER_S
from services.launcher import WorkerProcess
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually


async def test_nats_down_gets_503_with_retry_after_and_ready_follows(
    nats_server: EmbeddedNats, api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker("tests.workflows:Chain3")
    async with Client(api) as c:

        async def served() -> bool:
            return any(w["name"] == "Chain3" and w["instances"] for w in await c.workflows())

        await eventually(served, what="Chain3 served")
        rid = (await c.start("Chain3", text="before")).run_id
        await c.handle(rid).result()

    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        nats_server.kill()

        async def noticed() -> bool:
            return (await http.get("/health")).json()["nats"] is False

        await eventually(noticed, timeout=10, what="the control plane sees NATS gone")
        health = await http.get("/health")
        assert health.status_code == 200  # liveness: the process still serves
        ready = await http.get("/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == str(RETRY_AFTER_S)
        assert ready.json()["status"] == 503 and "not connected" in ready.json()["error"]

        for method, path, body in (
            ("GET", "/workflows", None),
            ("GET", "/runs", None),
            ("GET", f"/runs/{rid}", None),
            ("GET", f"/runs/{rid}/events", None),
            ("GET", f"/runs/{rid}/stream", None),
            ("GET", f"/runs/{rid}/state", None),
            ("POST", "/workflows/Chain3/runs", {"text": "during"}),
            ("POST", f"/runs/{rid}/cancel", {}),
            ("GET", "/sessions", None),
        ):
            started = time.monotonic()
            resp = await http.request(method, path, json=body)
            took = time.monotonic() - started
            assert resp.status_code == 503, (method, path, resp.status_code, resp.text)
            assert resp.headers["retry-after"] == str(RETRY_AFTER_S)
            err = resp.json()
            assert err["status"] == 503 and "NATS" in err["error"] and "Traceback" not in resp.text, err
            assert took < 2.0, (method, path, took)  # at once, not after a request timeout
        # malformed input is still 400: it is checked before NATS is needed
        assert (await http.get("/runs/a.b")).status_code == 400

        async with Client(api) as c:
            with pytest.raises(ApiError) as info:  # a start is not retried: it may have taken effect
                await c.start("Chain3", text="during")
            assert info.value.status == 503
            # a read retries through the outage (the SDK's unavailable_for_s) and a stream reconnects
            reading = asyncio.create_task(c.handle(rid).status())
            streaming = asyncio.create_task(anext(aiter(c.handle(rid).records())))
            finished, _ = await asyncio.wait({reading, streaming}, timeout=0.5)
            assert not finished  # both keep retrying while NATS is down
            await asyncio.to_thread(nats_server.start)  # same port, same store
            async with asyncio.timeout(30):
                assert (await reading)["status"] == "completed"
                assert (await streaming)["type"] == "RunStarted"

        async def back() -> bool:
            return (await http.get("/ready")).status_code == 200

        await eventually(back, timeout=30, what="/ready 200 once NATS is back")
        assert (await http.get(f"/runs/{rid}")).json()["status"] == "completed"
