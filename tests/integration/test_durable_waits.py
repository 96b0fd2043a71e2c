"""Durable waits against a real nats-server and real worker processes: human input that outlives
every worker, parallel waits in one run, and a sleep that spans a NATS server restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from engine import Context, HumanResponseEvent, StartEvent, StopEvent, Workflow, step
from engine.jetstream.log import JetStreamLog
from engine.model.errors import WaitTimeoutError
from services.client import Client
from services.launcher import WorkerProcess
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually
from tests.workflows import Reply

INTERVIEW = "tests.workflows:Interview"
NAP = "tests.workflows:Nap"


async def types_of(client: Client, run_id: str) -> list[str]:
    return [f"{r['kind']}.{r['type']}" for r in await client.handle(run_id).events()]


async def test_human_input_outlives_every_worker_and_parallel_waits_in_one_run(
    client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    first = [await start_worker(INTERVIEW), await start_worker(INTERVIEW)]
    handle = await client.start("Interview", people=["ana", "bo"])

    async def both_waiting() -> bool:
        return (await types_of(client, handle.run_id)).count("sys.StepSuspended") == 2

    await eventually(both_waiting, what="both questions are waiting")
    records = await handle.events()
    questions = [r["data"] for r in records if r["type"] == "Question"]
    assert sorted(q["who"] for q in questions) == ["ana", "bo"]  # each asked once

    for w in first:  # no worker holds the waiting steps: stop them all
        assert await w.stop() == 0
    await start_worker(INTERVIEW)

    # answers arrive through the HTTP API, in the other order, with an unrelated one first
    await handle.send_event(Reply(who="zed", text="nobody asked"))
    await handle.send_event(Reply(who="bo", text="Bo"))
    await handle.send_event(Reply(who="ana", text="Ana"), idempotency_key="ana-1")
    await handle.send_event(Reply(who="ana", text="Ana"), idempotency_key="ana-1")  # a retry
    assert await asyncio.wait_for(handle.result(), 60) == {"ana": "Ana", "bo": "Bo"}

    kinds = await types_of(client, handle.run_id)
    assert kinds.count("cmd.ask") == 2  # one Resume per answered wait
    assert kinds.count("evt.Reply") == 3  # the retried answer was appended once
    records = await client.handle(handle.run_id).events()
    # begin, ask x2 (each a one-message commit: its Answered event), gather x2
    assert sum(r["type"] == "StepCompleted" or r.get("completes_step", False) for r in records) == 1 + 2 + 2
    assert [r["type"] for r in records if r.get("completes_step")] == ["Answered", "Answered"]


async def test_sleep_spans_a_nats_server_restart_and_a_worker_restart(
    nats_server: EmbeddedNats, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    w = await start_worker(NAP)
    started = time.monotonic()
    handle = await client.start("Nap", seconds=4)

    async def asleep() -> bool:
        return "sys.StepSuspended" in await types_of(client, handle.run_id)

    await eventually(asleep, what="the nap step is suspended")
    assert "sch." in " ".join(r["subject"] for r in await handle.events())  # the pending timer
    w.kill()
    await nats_server.arestart()
    await start_worker(NAP)

    assert await asyncio.wait_for(handle.result(), 60) == {"slept": 4}
    assert time.monotonic() - started >= 4
    records = await handle.events()
    resumes = [r for r in records if r["kind"] == "cmd"]
    assert [r["data"]["reason"] for r in resumes] == ["timer"]
    assert not any(r["kind"] == "sch" for r in records)  # the server removed the fired schedule


class Answer(HumanResponseEvent):
    text: str


class Patient(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        try:
            got = await ctx.wait_for_event(Answer, timeout=ev.timeout)
        except WaitTimeoutError:
            return StopEvent(result="timed out")
        return StopEvent(result=got.text)


async def test_in_process_wait_times_out_durably_and_sleep_returns(nats_url: str) -> None:
    log = await JetStreamLog.connect(nats_url)
    try:
        wf = Patient(timeout=30, log=log)
        assert await wf.run(timeout=0.5) == "timed out"
        handler = wf.run(timeout=30)
        async def answer() -> None:
            await eventually(lambda: _suspended(log, handler.run_id), what="waiting")
            await handler.send_event(Answer(text="here"))

        await asyncio.gather(answer(), handler)
        assert handler.result() == "here"
    finally:
        await log.close()


async def _suspended(log: JetStreamLog, run_id: str) -> bool:
    return any(r.subject.endswith("sys.StepSuspended") for r in await log.read("Patient", run_id))
