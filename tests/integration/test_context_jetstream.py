"""Typed state and the Context object on a real nats-server with real worker processes: the state
type travels with the workflow class to every worker, a context dict made on one client resumes
its run from another, human input included."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import BaseModel, Field

from engine import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)
from services.nats_client import NatsClient
from tests.integration.procs import WorkerProcess

LEDGER = "tests.integration.test_context_jetstream:Ledger"
INTAKE = "tests.integration.test_context_jetstream:Intake"


class Book(BaseModel):
    total: int = 0
    pids: list[int] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)


class Begin(StartEvent):
    amount: int = 1


class Posted(Event):
    pass


class Ledger(Workflow):
    """Two steps, each changing the typed state, on whichever worker takes them."""

    @step
    async def post(self, ctx: Context[Book], ev: Begin) -> Posted:
        async with ctx.store.edit_state() as book:
            book.total += ev.amount
            book.pids.append(os.getpid())
            book.steps.append("post")
        return Posted()

    @step
    async def close(self, ctx: Context[Book], ev: Posted) -> StopEvent:
        book = await ctx.store.get_state()
        assert isinstance(book, Book)
        await ctx.store.set("total", book.total * 10)
        await ctx.store.set("pids", [*book.pids, os.getpid()])
        await ctx.store.set("steps", [*book.steps, "close"])
        return StopEvent(result=(await ctx.store.get_state()).model_dump())


class Question(InputRequiredEvent):
    prompt: str


class Reply(HumanResponseEvent):
    text: str


class Intake(Workflow):
    @step
    async def ask(self, ctx: Context[Book], ev: StartEvent) -> StopEvent:
        reply = await ctx.wait_for_event(Reply, waiter_event=Question(prompt="amount?"))
        async with ctx.store.edit_state() as book:
            book.total += int(reply.text)
            book.steps.append("ask")
        return StopEvent(result=(await ctx.store.get_state()).total)


@pytest.fixture
async def clients(nats_url: str) -> AsyncIterator[tuple[NatsClient, NatsClient]]:
    a = await NatsClient.connect(nats_url)
    b = await NatsClient.connect(nats_url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_typed_state_across_two_worker_processes(
    nats_url: str, clients: tuple[NatsClient, NatsClient], workers: Callable[..., WorkerProcess]
) -> None:
    w1, w2 = workers(LEDGER, nats_url), workers(LEDGER, nats_url)
    first, second = clients
    handlers = [await first.start(Ledger, amount=i, timeout=60) for i in range(1, 13)]
    results = await asyncio.gather(*handlers)
    pids: set[int] = set()
    for i, result in enumerate(results, 1):
        assert result["total"] == i * 10
        assert result["steps"] == ["post", "close"]
        pids.update(result["pids"])
    assert pids <= {w1.proc.pid, w2.proc.pid}
    assert len(pids) == 2  # the steps ran in both processes, and the state went with them

    # another client reads a run's state from the log, as the typed model
    ctx = second.attach(Ledger, handlers[0].run_id).ctx
    book = await ctx.store.get_state()
    assert isinstance(book, Book) and book.total == 10

    # a context dict of an ended run, taken to the other client: a new run carries its state over
    data = json.loads(json.dumps(handlers[2].ctx.to_dict()))
    assert data["run_id"] == handlers[2].run_id and data["is_running"] is False
    again = await second.start(Ledger, ctx=Context.from_dict(Ledger, data), amount=5, timeout=60)
    assert (await again)["total"] == (30 + 5) * 10
    assert again.run_id != handlers[2].run_id

    # and a state given to start
    seeded = await second.start(Ledger, state=Book(total=100), amount=1, timeout=60)
    assert (await seeded)["total"] == 1010


async def test_human_input_resumed_from_a_context_dict_on_another_client(
    nats_url: str, clients: tuple[NatsClient, NatsClient], workers: Callable[..., WorkerProcess]
) -> None:
    workers(INTAKE, nats_url)
    workers(INTAKE, nats_url)
    first, second = clients
    ctx = Context(Intake)
    await ctx.store.set("total", 7)
    handler = await first.start(Intake, ctx=ctx, timeout=60)
    data = None
    async for ev in handler.stream_events():
        if isinstance(ev, Question):
            data = json.dumps(handler.ctx.to_dict())
            break
    assert data is not None
    # the dict names the run: another client (another process could) re-attaches to it
    restored = Context.from_dict(Intake, json.loads(data))
    assert restored.is_running and restored.run_id == handler.run_id
    resumed = await second.start(Intake, ctx=restored, timeout=60)
    resumed.ctx.send_event(Reply(text="5"))
    assert await resumed == 12
    assert resumed.run_id == handler.run_id
    assert await handler == 12
    assert (await resumed.ctx.store.get_state()).steps == ["ask"]
