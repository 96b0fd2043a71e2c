"""Every operation of the control plane's OpenAPI document fuzzed with schemathesis (data that fits
the document, and data that does not), against real uvicorn, a real nats-server and a real worker:
no 5xx, every error a JSON body, success bodies as documented, and the control plane healthy after.

Each operation is fuzzed twice: with the parameters schemathesis makes up (mostly unknown names:
404, and malformed ones: 400), and with its path parameters bound to a real workflow, run and
session, so the fuzzed query parameters, headers and bodies reach the handlers' deeper code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from engine import StepFailedError
from services.client import Client
from services.control.auth import ApiAuth
from services.launcher import ControlPlaneServer, WorkerProcess
from tests.integration.procs import eventually

TOKEN = "fuzz-token-0f3a"


@pytest.fixture
async def secured(nats_url: str, tmp_path: Path) -> Any:
    """A control plane with auth on (so the fuzz runs through the guard too)."""
    cp = ControlPlaneServer(nats_url, port=0, shutdown_grace=1.0, auth=ApiAuth.from_token(TOKEN))
    await cp.start()
    try:
        yield cp.url
    finally:
        await cp.stop()


def fuzz(api: str, bound: dict[str, str], examples: int) -> list[str]:
    """Fuzz every operation; returns what was fuzzed (``METHOD path mode``). Blocking (requests)."""
    schema = schemathesis.openapi.from_url(f"{api}/schema/openapi.json", timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    session = requests.Session()
    done: list[str] = []
    problems: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        names = {p.name for p in op.path_parameters}
        path_values = {k: v for k, v in bound.items() if k in names}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies = [op.as_strategy(mode)]
            if path_values and mode is GenerationMode.POSITIVE:
                strategies.append(op.as_strategy(mode, path_parameters=path_values))

            @given(case=st.one_of(*strategies))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
            )
            def one(case: schemathesis.Case) -> None:
                resp = case.call(base_url=api, session=session, headers=headers, timeout=30)
                what = f"{case.method} {case.formatted_path} {case.query or ''} -> {resp.status_code}"
                assert resp.status_code < 500, f"{what}: {resp.text[:300]}"
                if resp.status_code >= 400:
                    body = resp.json()
                    assert body["status"] == resp.status_code and isinstance(body["error"], str), what
                case.validate_response(resp, checks=[content_type_conformance, response_schema_conformance])

            started = time.monotonic()
            try:
                one()
            except Unsatisfiable:  # nothing to make invalid (no parameters): nothing to send
                continue
            except Exception as exc:  # gather every operation's failure, then report them together
                problems.append(f"{op.label} {mode.value}: {exc}")
            done.append(f"{op.label} {mode.value} {time.monotonic() - started:.1f}s")
    assert not problems, "\n".join(problems)
    return done


async def fuzz_and_check(api: str, start_worker: Callable[..., Awaitable[WorkerProcess]], examples: int) -> None:
    # Nap without its ``seconds`` fails at once: started runs end (``?wait=true`` returns), SSE
    # streams of them end, and a retry of one is accepted and fails again
    await start_worker("tests.workflows:Nap")
    async with Client(api, token=TOKEN) as c:

        async def served() -> bool:
            return any(w["name"] == "Nap" and w["instances"] for w in await c.workflows())

        await eventually(served, what="Nap served")
        run = await c.start("Nap")
        with pytest.raises(StepFailedError):
            await run.result()
        session = await c.create_session("Nap")
    bound = {"name": "Nap", "run_id": run.run_id, "session_id": session.id}

    done = await asyncio.to_thread(fuzz, api, bound, examples)  # requests blocks: not on this loop
    operations = {d.rsplit(" ", 2)[0] for d in done}
    assert len(operations) >= 20, operations  # every endpoint of the API is in the document

    async with httpx.AsyncClient(base_url=api, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        ready = await http.get("/ready")
        assert ready.status_code == 200, ready.text
    await start_worker("tests.workflows:Chain3")
    async with Client(api, token=TOKEN) as c:

        async def chain_served() -> bool:
            return any(w["name"] == "Chain3" and w["instances"] for w in await c.workflows())

        await eventually(chain_served, what="Chain3 served")
        assert await c.run("Chain3", text="after the fuzz") == {"n": 3, "source": "after the fuzz"}


async def test_fuzz_every_operation_no_5xx(
    secured: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await fuzz_and_check(secured, start_worker, examples=8)


@pytest.mark.slow
async def test_fuzz_every_operation_no_5xx_more_examples(
    secured: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await fuzz_and_check(secured, start_worker, examples=150)
