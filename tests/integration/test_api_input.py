"""Bad names and ids from outside never reach NATS: every path parameter, query parameter, header
and body field that becomes a subject token or KV key gets 400 (malformed) or 404 (well-formed,
unknown) with a JSON error, never a 5xx, and the control plane stays healthy afterwards (before
services.control.validation, ``GET /workflows/<4,000 chars>`` made nats-server answer ``-ERR``,
nats-py closed the connection for good and every later request was a 500)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.client import Client
from services.launcher import WorkerProcess
from tests.integration.procs import eventually

CHAIN = "tests.workflows:Chain3"
GATE = "tests.workflows:Gate"

# In a URL path or query (percent-encoded where needed): what each stands for
NASTY_URL = {
    "4000 characters": "x" * 4000,
    "129 characters": "x" * 129,
    "..": "%2E%2E",
    "*": "%2A",
    ">": "%3E",
    "a b": "a%20b",
    "NUL": "a%00b",
    "tab": "a%09b",
    "invalid UTF-8": "%FF%FE",
    "non-ASCII": "%C3%A9t%C3%A9",
    "$JS.API.STREAM.DELETE.JETLOOM": "%24JS.API.STREAM.DELETE.JETLOOM",
    "a.b": "a.b",
}
# In a header (what HTTP lets through: no NUL or line breaks)
NASTY_HEADER = {
    "4000 characters": b"x" * 4000,
    "..": b"..",
    "*": b"*",
    ">": b">",
    "a b": b"a b",
    "tab": b"a\tb",
    "invalid UTF-8": b"\xff\xfe",
    "$JS.API.STREAM.DELETE.JETLOOM": b"$JS.API.STREAM.DELETE.JETLOOM",
}
# In a JSON body
NASTY_BODY = {
    "empty": "",
    "4000 characters": "x" * 4000,
    "..": "..",
    "*": "*",
    ">": ">",
    "a b": "a b",
    "NUL": "a\x00b",
    "newline": "a\nb",
    "non-ASCII": "été",
    "$JS.API.STREAM.DELETE.JETLOOM": "$JS.API.STREAM.DELETE.JETLOOM",
}

PATHS = [  # (method, path with {} for the name, JSON body)
    ("GET", "/workflows/{}", None),
    ("POST", "/workflows/{}/runs", {}),
    ("GET", "/runs/{}", None),
    ("GET", "/runs/{}/events", None),
    ("GET", "/runs/{}/stream", None),
    ("POST", "/runs/{}/events", {"type": "Approval", "data": {"approved": True}}),
    ("POST", "/runs/{}/cancel", {}),
    ("POST", "/runs/{}/retry", None),
    ("GET", "/runs/{}/state", None),
    ("POST", "/runs/{}/rollback", {"to_seq": 1}),
    ("POST", "/runs/{}/fork", {"at_seq": 1}),
    ("GET", "/sessions/{}", None),
    ("POST", "/sessions/{}/runs", {}),
    ("DELETE", "/sessions/{}", None),
]


def check_answer(resp: httpx.Response, allowed: tuple[int, ...], what: str) -> None:
    assert resp.status_code in allowed, (what, resp.status_code, resp.text[:300])
    body = resp.json()
    assert body["status"] == resp.status_code and isinstance(body["error"], str) and body["error"], (what, body)


async def still_healthy(api: str, http: httpx.AsyncClient) -> None:
    """``/ready`` 200, NATS connected, and a run starts and completes on a worker."""
    ready = await http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert (await http.get("/health")).json()["nats"] is True
    async with Client(api) as client:
        assert await client.run("Chain3", text="still here") == {"n": 2, "source": "still here"}


async def served(api: str, *workflows: str) -> None:
    async with Client(api) as c:

        async def check() -> bool:
            live = {w["name"] for w in await c.workflows() if w["instances"]}
            return set(workflows) <= live

        await eventually(check, what=f"{workflows} served")


@pytest.fixture
async def workers(api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]) -> dict[str, str]:
    """Chain3 and Gate served; a waiting Gate run and a session of it: ids to put beside the nasty ones."""
    await start_worker(CHAIN)
    await start_worker(GATE)
    await served(api, "Chain3", "Gate")
    async with Client(api) as c:
        run = await c.start("Gate")
        session = await c.create_session("Gate")
    return {"run": run.run_id, "session": session.id}


async def test_nasty_names_in_every_path_parameter_get_400(api: str, workers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        for label, nasty in NASTY_URL.items():
            for method, path, body in PATHS:
                resp = await http.request(method, path.format(nasty), json=body)
                check_answer(resp, (400,), f"{method} {path} with {label}")
                assert resp.json()["field"] in ("name", "run_id", "session_id"), resp.text[:300]
        # well-formed but unknown: 404
        for method, path, body in PATHS:
            resp = await http.request(method, path.format("no-such-thing_1"), json=body)
            check_answer(resp, (404,), f"{method} {path} unknown")
        await still_healthy(api, http)


async def test_nasty_query_parameters_get_400(api: str, workers: dict[str, str]) -> None:
    rid = workers["run"]
    queries = [
        ("GET", "/runs?workflow={}"),
        ("GET", "/runs?status={}"),
        ("GET", "/runs?cursor={}"),
        ("POST", "/workflows/Chain3/runs?run_id={}"),
        ("GET", f"/runs/{rid}/events?after={{}}"),
        ("GET", f"/runs/{rid}/state?at={{}}"),
        ("GET", f"/runs/{rid}/stream?after={{}}"),
    ]
    numbers = {"-1": "-1", "2**64": str(2**64), "NaN": "NaN", "x1": "x1"}
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        for label, nasty in {**NASTY_URL, **numbers}.items():
            for method, query in queries:
                if label in numbers and not any(k in query for k in ("cursor", "after", "at=")):
                    continue  # a valid name
                body = {"text": "a"} if method == "POST" else None
                resp = await http.request(method, query.format(nasty), json=body)
                check_answer(resp, (400,), f"{method} {query} with {label}")
        await still_healthy(api, http)


async def test_nasty_headers_get_400(api: str, workers: dict[str, str]) -> None:
    rid = workers["run"]
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        for label, nasty in NASTY_HEADER.items():
            resp = await http.post("/workflows/Chain3/runs", json={"text": "a"}, headers={"Idempotency-Key": nasty})
            check_answer(resp, (400,), f"start Idempotency-Key {label}")
            assert resp.json()["field"] == "Idempotency-Key"
            resp = await http.get(f"/runs/{rid}/stream", headers={"Last-Event-ID": nasty})
            check_answer(resp, (400,), f"Last-Event-ID {label}")
            assert resp.json()["field"] == "Last-Event-ID"
            if label in ("4000 characters", "a b", "tab", "invalid UTF-8"):  # the rest are keys there
                resp = await http.post(
                    f"/runs/{rid}/events",
                    json={"type": "Approval", "data": {"approved": False}},
                    headers={"Idempotency-Key": nasty},
                )
                check_answer(resp, (400,), f"event Idempotency-Key {label}")
        # an event's key may hold what a subject may not: it goes into a header
        resp = await http.post(
            f"/runs/{rid}/events",
            json={"type": "Approval", "data": {"approved": True}},
            headers={"Idempotency-Key": "$JS.API.*>..x"},
        )
        assert resp.status_code == 202, resp.text
        await still_healthy(api, http)


async def test_nasty_body_fields_get_400_or_422(api: str, workers: dict[str, str]) -> None:
    rid = workers["run"]
    async with Client(api) as c:
        waiting = (await c.start("Gate")).run_id
    bodies: list[tuple[str, Callable[[Any], dict[str, Any]], str]] = [
        (f"/runs/{rid}/fork", lambda x: {"at_seq": 1, "run_id": x}, "run_id"),
        (f"/runs/{waiting}/events", lambda x: {"type": x, "data": {}}, "type"),
        (f"/runs/{waiting}/events", lambda x: {"type": "Approval", "data": {"approved": True}, "step": x}, "step"),
        ("/sessions", lambda x: {"workflow": x}, "workflow"),
        ("/sessions", lambda x: {"workflow": "Gate", "id": x}, "id"),
    ]
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        for label, nasty in NASTY_BODY.items():
            for path, make, field in bodies:
                resp = await http.post(path, json=make(nasty))
                check_answer(resp, (400,), f"{path} {field}={label}")
                assert resp.json()["field"] == field, resp.text[:300]
            for path, make, field in bodies:  # not a string at all
                resp = await http.post(path, json=make(["x"]))
                check_answer(resp, (422,), f"{path} {field}=[...]")
        # lone surrogates are not JSON
        resp = await http.post("/sessions", content=b'{"workflow": "\\ud800"}')
        check_answer(resp, (400, 422), "lone surrogate")
        await still_healthy(api, http)
