"""The Context object outside the steps, in-process on MemoryLogs: ``Context(workflow)``,
``workflow.run(ctx=...)``, ``handler.ctx``, ``to_dict`` / ``from_dict`` through JSON, and the
reference's serializers and errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from engine import (
    Context,
    ContextSerdeError,
    ContextStateError,
    HumanResponseEvent,
    InputRequiredEvent,
    JsonSerializer,
    MemoryLog,
    PickleSerializer,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)
from engine.runtime.serializers import BaseSerializer


class Notes(BaseModel):
    runs: int = 0
    seen: list[str] = Field(default_factory=list)


class Go(StartEvent):
    word: str = "w"


class Tally(Workflow):
    @step
    async def count(self, ctx: Context[Notes], ev: Go) -> StopEvent:
        async with ctx.store.edit_state() as s:
            s.runs += 1
            s.seen.append(ev.word)
        return StopEvent(result=(await ctx.store.get_state()).model_dump())


class Asked(InputRequiredEvent):
    question: str


class Answered(HumanResponseEvent):
    text: str


class Ask(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("greeting", "hello")
        answer = await ctx.wait_for_event(Answered, waiter_event=Asked(question="name?"))
        return StopEvent(result=f"{await ctx.store.get('greeting')} {answer.text}")


async def released(wf: Workflow) -> None:
    """Wait (at most 5 s) until the workflow's in-process executor has no active run: every
    handler released it (handlers release it in their cleanup, just after they resolve)."""
    runtime = wf._runtime
    assert runtime is not None
    async with asyncio.timeout(5):
        while runtime.active:
            await asyncio.sleep(0.01)


def roundtrip(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))  # type: ignore[no-any-return]


async def test_a_context_carries_state_from_run_to_run() -> None:
    wf = Tally()
    ctx = Context(wf)
    first = wf.run(ctx=ctx, word="a")
    assert first.ctx is ctx
    assert await first == {"runs": 1, "seen": ["a"]}
    second = wf.run(ctx=ctx, word="b")
    assert await second == {"runs": 2, "seen": ["a", "b"]}
    assert second.run_id != first.run_id
    await released(wf)


async def test_to_dict_from_dict_round_trips_through_json_to_another_log() -> None:
    wf = Tally()
    ctx = Context(wf)
    handler = wf.run(ctx=ctx, word="a")
    await handler
    data = roundtrip(ctx.to_dict())
    assert data["run_id"] == handler.run_id
    assert data["workflow_name"] == "Tally"
    assert data["is_running"] is False
    assert data["state"]["state_type"] == "Notes"
    # a new instance has a log of its own: the state copy in the dict seeds the next run
    other = Tally(log=MemoryLog())
    restored = Context.from_dict(other, data)
    assert (await restored.store.get_state()) == Notes(runs=1, seen=["a"])
    assert await other.run(ctx=restored, word="c") == {"runs": 2, "seen": ["a", "c"]}


async def test_handler_ctx_of_a_plain_run() -> None:
    wf = Tally()
    handler = wf.run(word="z")
    ctx = handler.ctx  # taken before the run ends: to_dict gets its final state
    await handler
    assert await ctx.store.get("seen") == ["z"]
    assert roundtrip(ctx.to_dict())["state"]["state_data"]
    assert Context.from_dict(wf, ctx.to_dict()).run_id == handler.run_id


async def test_staged_state_starts_the_run() -> None:
    wf = Tally()
    ctx = Context(wf)
    await ctx.store.set("runs", 10)
    assert await wf.run(ctx=ctx) == {"runs": 11, "seen": ["w"]}


async def test_human_input_resumed_from_a_context_dict() -> None:
    wf = Ask()
    handler = wf.run()
    data = None
    async for ev in handler.stream_events():
        if isinstance(ev, Asked):
            data = roundtrip(handler.ctx.to_dict())
            break
    assert data is not None and data["is_running"] is True
    restored = Context.from_dict(wf, data)
    resumed = wf.run(ctx=restored)
    resumed.ctx.send_event(Answered(text="ada"))
    assert await resumed == "hello ada"
    assert resumed.run_id == handler.run_id  # the same run, re-attached
    assert await handler == "hello ada"
    await released(wf)  # the executor was released by both handlers


async def test_from_dict_rejects_what_does_not_fit() -> None:
    wf = Tally()
    with pytest.raises(ContextSerdeError):
        Context.from_dict(wf, "nope")  # type: ignore[arg-type]
    with pytest.raises(ContextSerdeError, match="workflow"):
        Context.from_dict(wf, {"workflow_name": "Other"})
    with pytest.raises(ContextSerdeError):
        Context.from_dict(wf, {"run_id": "bad id!"})
    with pytest.raises(ContextSerdeError):
        Context.from_dict(wf, {"state": {"state_data": '{"runs": "many"}'}})
    with pytest.raises(ContextSerdeError):
        Context.from_dict(wf, {"state": {"store_type": "redis"}})
    with pytest.raises(ContextSerdeError):
        Context.from_dict(Ask(), {"state": "x"})


async def test_context_faces_raise_context_state_error() -> None:
    wf = Ask()
    ctx = Context(wf)
    with pytest.raises(ContextStateError):
        ctx.send_event(Answered(text="x"))
    with pytest.raises(ContextStateError):
        ctx.write_event_to_stream(Answered(text="x"))
    with pytest.raises(ContextStateError):
        await ctx.wait_for_event(Answered)
    assert ctx.to_dict()["run_id"] is None

    class InStep(Workflow):
        @step
        async def s(self, ctx: Context, ev: StartEvent) -> StopEvent:
            try:
                ctx.to_dict()
            except ContextStateError:
                return StopEvent(result="refused")
            return StopEvent(result="allowed")

    assert await InStep().run() == "refused"


async def test_a_context_of_another_workflow_is_refused() -> None:
    with pytest.raises(ContextSerdeError):
        Tally().run(ctx=Context(Ask()))


@pytest.mark.parametrize("serializer", [JsonSerializer(), PickleSerializer()])
async def test_serializers_round_trip_models(serializer: BaseSerializer) -> None:
    value = {"n": Notes(runs=2), "xs": [1, "a"]}
    assert serializer.deserialize(serializer.serialize(value)) == value
    wf = Tally()
    ctx = Context(wf, serializer=serializer)
    await wf.run(ctx=ctx)
    restored = Context.from_dict(wf, roundtrip(ctx.to_dict()), serializer=serializer)
    assert (await restored.store.get_state()).runs == 1


def test_json_serializer_allowed_types() -> None:
    payload = JsonSerializer().serialize(Notes())
    assert JsonSerializer(allowed_types=[Notes]).deserialize(payload) == Notes()
    with pytest.raises(ValueError, match="allowed_types"):
        JsonSerializer(allowed_types=[]).deserialize(payload)


def test_pickle_serializer_takes_what_json_cannot() -> None:
    s = PickleSerializer()
    assert s.deserialize(s.serialize({1, 2})) == {1, 2}
    with pytest.raises(ValueError):
        JsonSerializer().serialize({1, 2})


async def test_a_dict_written_by_llama_index_workflows_reads() -> None:
    reference = pytest.importorskip("workflows")
    from workflows.events import StartEvent as RefStart
    from workflows.events import StopEvent as RefStop

    class RefTally(reference.Workflow):  # the reference's twin of Tally
        @reference.step
        async def count(self, ctx: reference.Context[Notes], ev: RefStart) -> RefStop:
            async with ctx.store.edit_state() as s:
                s.runs += 5
            return RefStop(result=None)

    ref_ctx = reference.Context(RefTally())
    await RefTally().run(ctx=ref_ctx)
    data = roundtrip(ref_ctx.to_dict())
    wf = Tally()
    restored = Context.from_dict(wf, data)
    assert restored.run_id is None
    assert await wf.run(ctx=restored) == {"runs": 6, "seen": ["w"]}


async def test_the_reference_pattern_that_cancels_the_first_run() -> None:
    """As llama-index-workflows' docs write it: save the dict, cancel, resume from the dict. The
    cancelled run has ended here (a deliberate difference: cancel is durable), so the context
    starts a new run, whose wait takes the answer sent to it."""
    wf = Ask()
    handler = wf.run()
    async for ev in handler.stream_events():
        if isinstance(ev, Asked):
            data = roundtrip(handler.ctx.to_dict())
            await handler.cancel_run()
            break
    resumed = wf.run(ctx=Context.from_dict(wf, data))
    resumed.ctx.send_event(Answered(text="bo"))
    assert await resumed == "hello bo"
    assert resumed.run_id != handler.run_id
