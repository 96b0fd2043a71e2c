"""Bearer-token authentication of the control plane (services.control.auth), with the SDK and the
CLI, against a real nats-server, real uvicorn and real worker processes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from services.client import ApiError, Client, SyncClient
from services.control.auth import OPEN_WARNING, ApiAuth
from services.launcher import ControlPlaneServer, Launcher, WorkerProcess, load_deployment
from tests.integration.procs import eventually

ROOT = Path(__file__).resolve().parents[2]
GATE = "tests.workflows:Gate"

FULL = "full-token-5b1d"  # every scope (given by value)
READER = "reader-token-93ac"  # read (given by its sha256 only)
RUNNER = "runner-token-7e20"  # run
ADMIN = "admin-token-c4f8"  # admin
TOKENS = (FULL, READER, RUNNER, ADMIN)


def tokens_file(path: Path) -> Path:
    path.write_text(
        f"""
[[tokens]]
name = "ops"
token = "{FULL}"
scopes = ["read", "run", "admin"]

[[tokens]]
name = "dashboard"
sha256 = "{hashlib.sha256(READER.encode()).hexdigest()}"
scopes = ["read"]

[[tokens]]
name = "ci"
token = "{RUNNER}"
scopes = ["run"]

[[tokens]]
name = "oncall"
token = "{ADMIN}"
scopes = ["admin"]
"""
    )
    return path


@pytest.fixture
async def secured(nats_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A control plane that takes the tokens of ``tokens_file``."""
    cp = ControlPlaneServer(nats_url, port=0, shutdown_grace=1.0, auth=ApiAuth.from_file(tokens_file(tmp_path / "t.toml")))
    await cp.start()
    try:
        yield cp.url
    finally:
        await cp.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def gate_run(api: str) -> str:
    """A run of Gate that waits for an Approval (so it can be cancelled or sent events)."""
    async with Client(api, token=FULL) as c:
        return (await c.start("Gate")).run_id


async def served(api: str, workflow: str) -> None:
    async with Client(api, token=FULL) as c:

        async def check() -> bool:
            return any(w["name"] == workflow and w["instances"] for w in await c.workflows())

        await eventually(check, what=f"{workflow} served")


async def test_no_token_or_a_wrong_one_gets_401_with_a_bearer_challenge(secured: str) -> None:
    requests = [
        ("GET", "/workflows", None),
        ("GET", "/runs", None),
        ("GET", "/runs/abc/stream", None),
        ("POST", "/workflows/Gate/runs", {}),
        ("POST", "/runs/abc/cancel", {}),
        ("POST", "/sessions", {"workflow": "Gate"}),
    ]
    async with httpx.AsyncClient(base_url=secured, timeout=30) as http:
        for headers in ({}, bearer("not-a-token"), {"Authorization": f"Basic {FULL}"}, {"Authorization": "Bearer"}):
            for method, path, body in requests:
                resp = await http.request(method, path, json=body, headers=headers)
                assert resp.status_code == 401, (method, path, headers, resp.text)
                assert resp.headers["www-authenticate"].startswith("Bearer")
                err = resp.json()
                assert err["status"] == 401 and err["error"], err
                for token in TOKENS:
                    assert token not in resp.text


async def test_each_scope_opens_its_endpoints_and_no_other(
    secured: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(GATE)
    await served(secured, "Gate")
    rid = await gate_run(secured)

    async def call(token: str, what: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=secured, timeout=30, headers=bearer(token)) as http:
            if what == "read":
                return await http.get(f"/runs/{rid}")
            if what == "run":
                return await http.post("/workflows/Gate/runs", json={})
            return await http.post("/sessions", json={"workflow": "Gate"})  # admin

    allowed = {FULL: {"read", "run", "admin"}, READER: {"read"}, RUNNER: {"run"}, ADMIN: {"admin"}}
    for token, scopes in allowed.items():
        for what in ("read", "run", "admin"):
            resp = await call(token, what)
            if what in scopes:
                assert resp.status_code in (200, 201), (token, what, resp.text)
            else:
                assert resp.status_code == 403, (token, what, resp.text)
                err = resp.json()
                assert err["status"] == 403 and err["scope"] == what and what in err["error"]
                assert token not in resp.text

    # the admin endpoints on runs, and sending events (run)
    async with httpx.AsyncClient(base_url=secured, timeout=30) as http:
        resp = await http.post(f"/runs/{rid}/cancel", json={}, headers=bearer(RUNNER))
        assert resp.status_code == 403
        resp = await http.post(f"/runs/{rid}/fork", json={"at_seq": 1}, headers=bearer(READER))
        assert resp.status_code == 403
        resp = await http.post(
            f"/runs/{rid}/events", json={"type": "Approval", "data": {"approved": True}}, headers=bearer(ADMIN)
        )
        assert resp.status_code == 403
        resp = await http.post(f"/runs/{rid}/cancel", json={}, headers=bearer(ADMIN))
        assert resp.status_code == 202, resp.text
        other = await gate_run(secured)
        resp = await http.post(
            f"/runs/{other}/events", json={"type": "Approval", "data": {"approved": True}}, headers=bearer(RUNNER)
        )
        assert resp.status_code == 202, resp.text


async def test_health_ready_and_the_openapi_pages_stay_open(secured: str) -> None:
    async with httpx.AsyncClient(base_url=secured, timeout=30) as http:
        assert (await http.get("/health")).status_code == 200
        ready = await http.get("/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        doc = await http.get("/schema/openapi.json")
        assert doc.status_code == 200
    spec = doc.json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API token; scopes: read, run, admin",
    }
    assert {"bearer": []} in spec["paths"]["/runs"]["get"]["security"]
    assert {} in spec["paths"]["/health"]["get"]["security"]  # anonymous allowed there


async def test_sdk_sends_the_token_on_every_request_streams_included(
    secured: str, start_worker: Callable[..., Awaitable[WorkerProcess]], monkeypatch: pytest.MonkeyPatch
) -> None:
    await start_worker(GATE)
    await served(secured, "Gate")
    async with Client(secured, token=FULL) as c:
        handle = await c.start("Gate")
        await handle.send_event(type="Approval", data={"approved": True, "by": "sdk"})
        records = [r async for r in handle.records()]  # the SSE stream, with the token
        assert records[-1]["type"] == "RunCompleted"
        assert await handle.result() == {"approved": True, "by": "sdk"}

    async with Client(secured) as anonymous:
        with pytest.raises(ApiError) as info:
            await anonymous.workflows()
        assert info.value.status == 401
        with pytest.raises(ApiError) as info:  # the stream too
            _ = [r async for r in anonymous.handle(handle.run_id).records()]
        assert info.value.status == 401
    async with Client(secured, token=RUNNER) as runner:
        with pytest.raises(ApiError) as info:
            _ = [r async for r in runner.handle(handle.run_id).records()]
        assert info.value.status == 403
    async with Client(secured, token=READER) as reader:
        assert [r["seq"] async for r in reader.handle(handle.run_id).records()] == [r["seq"] for r in records]

    monkeypatch.setenv("JETLOOM_API_TOKEN", READER)  # the default token
    async with Client(secured) as from_env:
        assert (await from_env.handle(handle.run_id).status())["status"] == "completed"

    def blocking() -> str:  # (in a thread: this loop serves the control plane)
        with SyncClient(secured, token=FULL) as sync:
            return sync.handle(handle.run_id).status()["status"]

    assert await asyncio.to_thread(blocking) == "completed"


async def jetloom(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m services.cli ARGS``: (exit code, stdout, stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("JETLOOM_API_TOKEN")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args,
        cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_takes_the_token_from_the_option_or_the_environment(
    secured: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker(GATE)
    await served(secured, "Gate")
    rid = await gate_run(secured)

    code, out, err = await jetloom("runs", "--url", secured)
    assert code == 1 and "401" in err and "--token" in err and len(err.strip().splitlines()) == 1, err
    code, out, err = await jetloom("runs", "--url", secured, "--token", "wrong")
    assert code == 1 and "401" in err, err
    code, out, err = await jetloom("runs", "--url", secured, "--json", "--token", READER)
    assert code == 0 and rid in out, err
    code, out, err = await jetloom("runs", "--url", secured, "--json", env={"JETLOOM_API_TOKEN": READER})
    assert code == 0 and rid in out, err
    code, out, err = await jetloom("cancel", rid, "--url", secured, "--token", READER)
    assert code == 1 and "403" in err and "admin" in err and len(err.strip().splitlines()) == 1, err
    code, out, err = await jetloom("events", rid, "--follow", "--json", "--url", secured, "--token", RUNNER)
    assert code == 1 and "403" in err, err  # the SSE stream needs read
    code, out, err = await jetloom("sessions", "create", "Gate", "--url", secured, "--token", ADMIN)
    assert code == 0 and out.strip(), err
    code, out, err = await jetloom("cancel", rid, "--url", secured, env={"JETLOOM_API_TOKEN": ADMIN})
    assert code == 0 and "cancelled" in out, err
    code, out, err = await jetloom("events", rid, "--follow", "--json", "--url", secured, "--token", READER)
    assert code == 1 and "RunCancelled" in out, err  # streamed to the end (a cancelled run exits 1)


class Collect(logging.Handler):
    """Keeps the messages of one logger (Litestar's logging config replaces the root handlers
    that pytest's caplog relies on)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_open_api_warns_once_at_start_and_a_secured_one_does_not(nats_url: str) -> None:
    logger = logging.getLogger("jetloom.control")
    seen = Collect()
    logger.addHandler(seen)
    try:
        cp = ControlPlaneServer(nats_url, port=0, shutdown_grace=1.0)
        await cp.start()
        try:
            async with httpx.AsyncClient(base_url=cp.url) as http:
                assert (await http.get("/workflows")).status_code == 200  # open: no token needed
        finally:
            await cp.stop()
        assert [m for m in seen.messages if "open" in m] == [OPEN_WARNING]
        seen.messages.clear()
        cp = ControlPlaneServer(nats_url, port=0, shutdown_grace=1.0, auth=ApiAuth.from_token(FULL))
        await cp.start()
        try:
            async with httpx.AsyncClient(base_url=cp.url) as http:
                assert (await http.get("/workflows")).status_code == 401
                assert (await http.get("/workflows", headers=bearer(FULL))).status_code == 200
        finally:
            await cp.stop()
        assert not [m for m in seen.messages if "open" in m]
        assert not [m for m in seen.messages if FULL in m]
    finally:
        logger.removeHandler(seen)


async def test_control_plane_command_takes_a_tokens_file_and_the_token_env(nats_url: str, tmp_path: Path) -> None:
    path = tokens_file(tmp_path / "tokens.toml")
    base = {k: v for k, v in os.environ.items() if not k.startswith("JETLOOM_API_TOKEN")}
    for args, env in (
        (["--api-tokens", str(path)], {}),
        ([], {"JETLOOM_API_TOKENS_FILE": str(path)}),
        ([], {"JETLOOM_API_TOKEN": FULL}),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "control-plane", "--nats", nats_url, "--port", "0", *args,
            cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(30):
                line = (await proc.stdout.readline()).decode()
            assert line.startswith("jetloom control plane ready"), line
            url = line.split("api=")[1].split()[0]
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                assert (await http.get("/workflows")).status_code == 401
                assert (await http.get("/workflows", headers=bearer(FULL))).status_code == 200
                if "JETLOOM_API_TOKEN" not in env:
                    assert (await http.get("/workflows", headers=bearer(READER))).status_code == 200
        finally:
            proc.terminate()
            async with asyncio.timeout(30):
                _, err = await proc.communicate()
        text = err.decode()
        assert OPEN_WARNING not in text
        for token in TOKENS:
            assert token not in text

    bad = tmp_path / "bad.toml"
    bad.write_text('[[tokens]]\nname = "x"\nsha256 = "abc"\n')
    code, out, err = await jetloom("control-plane", "--nats", nats_url, "--port", "0", "--api-tokens", str(bad))
    assert code == 2 and "64 hex digits" in err and len(err.strip().splitlines()) == 1, err


async def test_deployment_file_names_the_tokens_file(nats_url: str, tmp_path: Path) -> None:
    tokens_file(tmp_path / "tokens.toml")
    (tmp_path / "jetloom.toml").write_text('[control_plane]\nport = 0\napi_tokens = "tokens.toml"\n')
    dep = load_deployment(tmp_path / "jetloom.toml")
    async with Launcher(nats_url, cwd=tmp_path) as launcher:
        cp = await launcher.launch(dep)
        assert cp is not None
        async with httpx.AsyncClient(base_url=cp.url, timeout=30) as http:
            assert (await http.get("/runs")).status_code == 401
            assert (await http.get("/runs", headers=bearer(READER))).status_code == 200
            assert (await http.get("/ready")).status_code == 200
