"""The shipped example server configuration with accounts and roles (``examples/secure/nats.conf``,
issue 16 part 6), run as it is on a real nats-server.

A worker with the ``worker`` role and a control plane with the ``control-plane`` role run a
workflow to completion without a single permissions violation; the read-only ``observer`` receives
the run's events with a plain nats-py subscription, and the server refuses its publish to a run
subject (the violation reaches its error callback, and nothing reaches the stream). Every other
operation runs under the roles too, so the example's rules are measured, not read off the code:
cancel, rollback, fork, retry, a long SSE stream, state at a sequence, a dead letter, snapshots,
a durable timer, human input, a run timeout, a run list and a session.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from engine.jetstream.connection import NatsConnectError, NatsSettings, open_connection
from services.client import Client, RunHandle
from services.launcher import ControlPlaneServer
from services.launcher import WorkerProcess as AsyncWorkerProcess
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually
from tests.retry_workflows import BROKEN_ENV

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "secure" / "nats.conf"
CHAIN = "tests.workflows:Chain3"
#: a worker per workflow the operations need (args after the target)
WORKERS = {
    "Chain3": [CHAIN, "--snapshot-every", "2"],  # snapshots, cancel, rollback, fork, timeouts
    # a second one: runs owned by one are handed over from the other (jetloom.handoff.>)
    "Chain3 again": [CHAIN, "--snapshot-every", "2"],
    "Ticker": ["tests.workflows:Ticker"],  # a long SSE stream
    "Nap": ["tests.workflows:Nap"],  # a durable timer
    "Interview": ["tests.workflows:Interview"],  # wait_for_event and POST /runs/{id}/events
    "Doorbell": ["tests.semantics_workflows:Doorbell"],  # a dead-lettered trigger
    "Fixable": ["tests.retry_workflows:Fixable"],  # a failed step, then POST /runs/{id}/retry
}


@pytest.fixture
async def secure_nats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[EmbeddedNats, dict[str, str]]]:
    """The example configuration as shipped; its passwords come from the server's environment."""
    passwords = {
        # nats-server parses a variable's value as a config value: one that starts with "-" or a
        # digit is read as a number and the server refuses to start (seen with token_urlsafe)
        role: "pw" + secrets.token_hex(16) for role in ("worker", "control-plane", "observer")
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

    violations = _violations(server)
    assert violations and all('"JETLOOM/user:observer"' in line for line in violations), violations


def _violations(server: EmbeddedNats) -> list[str]:
    """The server's "Permissions Violation" log lines (one per refused publish or subscribe)."""
    return [line for line in server.log_tail(5000).splitlines() if "Violation" in line]


async def test_every_operation_runs_under_the_roles_without_a_violation(
    secure_nats: tuple[EmbeddedNats, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, passwords = secure_nats

    def role(name: str) -> NatsSettings:
        return NatsSettings(url=server.url, user=name, password=passwords[name])

    monkeypatch.setenv(BROKEN_ENV, "1")  # (inherited by the Fixable worker: its check step fails)
    workers = await asyncio.gather(
        *(AsyncWorkerProcess.start(a[0], role("worker"), args=a[1:], cwd=ROOT) for a in WORKERS.values())
    )
    cp = ControlPlaneServer(role("control-plane"), port=0, shutdown_grace=1.0)
    try:
        await asyncio.gather(*(w.wait_ready() for w in workers))
        await cp.start()
        async with Client(cp.url) as client:
            await _operations(client, role("control-plane"))
        # the worker's snapshots landed in their bucket (read with the control plane's role)
        nc = await nats.connect(server.url, user="control-plane", password=passwords["control-plane"])
        try:
            snapshots = await nc.jetstream().key_value("jetloom_snapshots")
            assert await snapshots.keys()
        finally:
            await nc.close()
    finally:
        await cp.stop()
        await asyncio.gather(*(w.stop() for w in workers))
    violations = _violations(server)
    assert not violations, "\n".join(violations)


async def _operations(client: Client, admin: NatsSettings) -> None:
    """Each operation of the HTTP API that reaches NATS differently, checked for its outcome."""

    async def status_is(handle: RunHandle, status: str) -> bool:
        return (await handle.status())["status"] == status

    # a run, its state at a sequence, a rollback, a fork (worker: snapshots every 2 records)
    handle = await client.start("Chain3", text="one two three")
    assert await asyncio.wait_for(handle.result(), 60) == {"n": 3, "source": "one two three"}
    records = await handle.events()
    parsed = next(r["seq"] for r in records if r["type"] == "Parsed") + 1  # (its out.Progress)
    assert (await handle.state(at=parsed))["status"] == "running"
    assert (await handle.rollback(parsed, reason="again"))["epoch"] == 1

    async def completed_twice() -> bool:
        return sum(r["type"] == "RunCompleted" for r in await handle.events()) == 2

    await eventually(completed_twice, timeout=30, what="the run completes again after its rollback")
    forked = await handle.fork(parsed)
    assert await asyncio.wait_for(forked.result(), 60) == {"n": 3, "source": "one two three"}

    # cancel a running step; a run timeout
    slow = await client.start("Chain3", text="slow", delay=60)
    timed = await client.start("Chain3", text="slower", delay=60, run_timeout=1.0)
    await slow.cancel("enough")
    await eventually(lambda: status_is(slow, "cancelled"), timeout=30, what="the run cancelled")
    await eventually(lambda: status_is(timed, "failed"), timeout=30, what="the run timed out")
    assert (await timed.status())["error"]["type"] == "WorkflowTimeoutError"

    # a long SSE stream, read as it is written
    ticks = await client.start("Ticker", n=40, interval=0.02)
    streamed = [r async for r in ticks.records()]
    assert sum(r["type"] == "Ticked" for r in streamed) == 40
    assert streamed[-1]["type"] == "RunCompleted"

    # a durable timer; human input through wait_for_event
    nap = await client.start("Nap", seconds=1)
    asking = await client.start("Interview", people=["ada"])

    async def asked() -> bool:
        return any(r["type"] == "Question" for r in await asking.events())

    await eventually(asked, timeout=30, what="the question is asked")
    await asking.send_event(type="Reply", data={"who": "ada", "text": "Ada"})
    assert await asyncio.wait_for(asking.result(), 30) == {"ada": "Ada"}
    assert await asyncio.wait_for(nap.result(), 30) == {"slept": 1}

    # a dead letter: an undecodable event from a foreign producer fails the run it was sent to
    door = await client.start("Doorbell")

    async def waiting() -> bool:
        return any(r["type"] == "StepCompleted" or r.get("completes_step") for r in await door.events())

    await eventually(waiting, timeout=30, what="the run waits for its Nudge")
    nc = await open_connection(admin)
    try:
        subject = f"jetloom.run.Doorbell.{door.run_id}.evt.Nudge"
        await nc.jetstream().publish(subject, b"\x00not json", headers={"Jl-Run": door.run_id, "Jl-Type": "Nudge"})
    finally:
        await nc.close()
    await eventually(lambda: status_is(door, "failed"), timeout=30, what="the dead letter fails the run")
    assert (await door.status())["error"]["type"] == "DeadLetteredError"

    # a failed step retried (it fails again: the worker is still broken)
    fixable = await client.start("Fixable", text="x")
    await eventually(lambda: status_is(fixable, "failed"), timeout=30, what="the check step fails")
    assert (await fixable.retry())["attempt"] == 2

    async def failed_twice() -> bool:
        return sum(r["type"] == "StepFailed" for r in await fixable.events()) == 2

    await eventually(failed_twice, timeout=30, what="the retried step fails again")

    # a run list and a session
    listed, _ = await client.runs(workflow="Chain3", limit=100)
    assert {handle.run_id, forked.run_id, slow.run_id, timed.run_id} <= {r["run_id"] for r in listed}
    session = await client.create_session("Chain3")
    assert (await session.run(text="in a session"))["n"] == 3
    assert (await session.info())["runs"]


async def test_the_example_refuses_to_start_without_its_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("JETLOOM_WORKER_PASSWORD", "JETLOOM_CONTROL_PASSWORD", "JETLOOM_OBSERVER_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    server = EmbeddedNats(port=0, store_dir=tmp_path / "store", config=CONFIG)
    with pytest.raises(Exception, match="JETLOOM_WORKER_PASSWORD"):
        await asyncio.wait_for(server.astart(), 30)
    await server.astop()


@pytest.mark.parametrize("name", ["worker", "control-plane"])
async def test_flow_controlled_consumers_are_not_stalled_under_the_roles(
    secure_nats: tuple[EmbeddedNats, dict[str, str]], name: str
) -> None:
    """The server asks a flow-controlled consumer (a KV watcher, the read of a long run) for an
    answer on "$JS.FC.>" every ≈ 2 MB it delivers and stops delivering until it gets one: 6 MB
    of records reach an ordered consumer under each role (without the rule, 5 of 12 did)."""
    server, passwords = secure_nats
    nc = await nats.connect(server.url, user=name, password=passwords[name])
    try:
        js = nc.jetstream()
        await js.add_stream(name="JETLOOM", subjects=["jetloom.run.>"])
        for _ in range(12):
            await js.publish("jetloom.run.Big.r1.evt.Chunk", b"x" * 500_000)
        got: list[Msg] = []

        async def on_msg(msg: Msg) -> None:
            got.append(msg)

        await js.subscribe("jetloom.run.Big.>", cb=on_msg, ordered_consumer=True)

        async def all_delivered() -> bool:
            return len(got) == 12

        await eventually(all_delivered, timeout=20, what="12 records of 500 kB delivered")
    finally:
        await nc.close()
    assert not _violations(server)
