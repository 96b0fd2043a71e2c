"""The shipped example server configuration with accounts and roles (``examples/secure/nats.conf``,
issue 16 part 6), run as it is on a real nats-server.

A worker with the ``worker`` role and a control plane with the ``control-plane`` role run a
workflow to completion without a single permissions violation; the read-only ``observer`` receives
the run's events with a plain nats-py subscription, and the server refuses its publish to a run
subject (the violation reaches its error callback, and nothing reaches the stream).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from engine.log.connection import NatsConnectError, NatsSettings, open_connection
from services.client import Client
from services.launcher import ControlPlaneServer
from services.launcher import WorkerProcess as AsyncWorkerProcess
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "secure" / "nats.conf"
CHAIN = "tests.workflows:Chain3"


@pytest.fixture
async def secure_nats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[EmbeddedNats, dict[str, str]]]:
    """The example configuration as shipped; its passwords come from the server's environment."""
    passwords = {
        role: secrets.token_urlsafe(16) for role in ("worker", "control-plane", "observer")
    }
    monkeypatch.setenv("JETLOOM_WORKER_PASSWORD", passwords["worker"])
    monkeypatch.setenv("JETLOOM_CONTROL_PASSWORD", passwords["control-plane"])
    monkeypatch.setenv("JETLOOM_OBSERVER_PASSWORD", passwords["observer"])
    async with EmbeddedNats(port=0, store_dir=tmp_path / "store", config=CONFIG) as server:
        yield server, passwords


async def test_roles_run_a_workflow_and_the_observer_only_reads(
    secure_nats: tuple[EmbeddedNats, dict[str, str]],
) -> None:
    server, passwords = secure_nats

    def role(name: str) -> NatsSettings:
        return NatsSettings(url=server.url, user=name, password=passwords[name])

    with pytest.raises(NatsConnectError):  # no anonymous access
        await open_connection(NatsSettings(url=server.url, connect_attempts=1))

    seen: list[Msg] = []
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    async def on_msg(msg: Msg) -> None:
        seen.append(msg)

    observer = await nats.connect(
        server.url, user="observer", password=passwords["observer"], error_cb=on_error
    )
    worker = await AsyncWorkerProcess.start(CHAIN, role("worker"), cwd=ROOT)
    cp = ControlPlaneServer(role("control-plane"), port=0, shutdown_grace=1.0)
    try:
        await observer.subscribe("jetloom.run.>", cb=on_msg)
        await observer.flush()
        await worker.wait_ready()
        await cp.start()
        async with Client(cp.url) as client:
            handle = await client.start("Chain3", text="three little words")
            assert await handle.result() == {"n": 3, "source": "three little words"}
            records = await handle.events()

            run_prefix = f"jetloom.run.Chain3.{handle.run_id}."

            async def observed() -> bool:
                subjects = {m.subject for m in seen if m.subject.startswith(run_prefix)}
                return {run_prefix + "sys.RunStarted", run_prefix + "sys.RunCompleted"} <= subjects

            await eventually(observed, timeout=10, what="the observer sees the run start and end")

            # read-only: the server refuses a publish to a run subject
            await observer.publish(run_prefix + "evt.Forged", b"{}")
            await observer.flush()

            async def refused() -> bool:
                return any("permissions violation" in str(e).lower() for e in errors)

            await eventually(refused, timeout=10, what="a permissions violation for the publish")
            assert "evt.forged" in str(errors[0]).lower()
            assert observer.is_connected  # a violation does not cost the connection
            assert len(await handle.events()) == len(records)  # nothing reached the stream
            # ... nor may it subscribe anywhere else (e.g. to the JetStream API's replies)
            await observer.subscribe("_INBOX.>")
            await observer.flush()
            async def refused_twice() -> bool:
                return len(errors) >= 2

            await eventually(refused_twice, timeout=10, what="a subscribe violation")
            assert "subscription" in str(errors[1]).lower()
    finally:
        await cp.stop()
        await worker.stop()
        await observer.close()

    log = server.log_tail(2000)
    violations = [line for line in log.splitlines() if "Violation" in line]
    assert violations and all('"JETLOOM/user:observer"' in line for line in violations), violations


async def test_the_example_refuses_to_start_without_its_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("JETLOOM_WORKER_PASSWORD", "JETLOOM_CONTROL_PASSWORD", "JETLOOM_OBSERVER_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    server = EmbeddedNats(port=0, store_dir=tmp_path / "store", config=CONFIG)
    with pytest.raises(Exception, match="JETLOOM_WORKER_PASSWORD"):
        await asyncio.wait_for(server.astart(), 30)
    await server.astop()
