"""The run that follows a context of an ended run (``workflow.run(ctx=...)``) in-process: a context
taken while its run was going (the docs' human-input pattern: ``to_dict()``, ``cancel_run()``,
``Context.from_dict``, ``run(ctx=ctx)``) replays the ended run's start event when given none, as
llama-index-workflows resumes it with no new start event; a context taken after the run ended
starts from the fields given, as there."""

from __future__ import annotations

import json

import pytest

from engine import (
    Context,
    HumanResponseEvent,
    InputRequiredEvent,
    MemoryLog,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)


class Ask(StartEvent):
    question: str


class Pause(Workflow):
    @step
    async def ask(self, ctx: Context, ev: Ask) -> InputRequiredEvent:
        await ctx.store.set("asked", await ctx.store.get("asked", 0) + 1)
        return InputRequiredEvent(prefix=ev.question)

    @step
    async def answer(self, ctx: Context, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result={"asked": await ctx.store.get("asked"), "response": ev.response})


async def _paused_dict(wf: Pause, **fields: str) -> tuple[dict, str]:
    handler = wf.run(**fields)
    async for ev in handler.stream_events():
        if isinstance(ev, InputRequiredEvent):
            break
    data = json.loads(json.dumps(handler.ctx.to_dict()))
    await handler.cancel_run()
    return data, handler.run_id


async def test_a_context_taken_while_running_replays_the_start_event_after_cancel() -> None:
    wf = Pause(timeout=10, log=MemoryLog())
    data, old_id = await _paused_dict(wf, question="Proceed?")
    assert data["is_running"] is True
    resumed = wf.run(ctx=Context.from_dict(wf, data))
    prompts = []
    async for ev in resumed.stream_events():
        if isinstance(ev, InputRequiredEvent):
            prompts.append(ev.prefix)
            resumed.ctx.send_event(HumanResponseEvent(response="yes"))
    assert prompts == ["Proceed?"]  # (the start event of the cancelled run, its question included)
    assert await resumed == {"asked": 2, "response": "yes"}  # (and its state: asked once before)
    assert resumed.run_id != old_id


async def test_fields_given_with_such_a_context_start_the_new_run() -> None:
    wf = Pause(timeout=10, log=MemoryLog())
    data, _ = await _paused_dict(wf, question="Proceed?")
    resumed = wf.run(ctx=Context.from_dict(wf, data), question="Really?")
    async for ev in resumed.stream_events():
        if isinstance(ev, InputRequiredEvent):
            assert ev.prefix == "Really?"
            resumed.ctx.send_event(HumanResponseEvent(response="no"))
    assert await resumed == {"asked": 2, "response": "no"}


async def test_a_context_taken_after_the_run_ended_needs_a_start() -> None:
    wf = Pause(timeout=10, log=MemoryLog())
    data, _ = await _paused_dict(wf, question="Proceed?")
    data["is_running"] = False  # (as to_dict says once the run has ended)
    with pytest.raises(ValueError, match="question"):  # (as the reference: a start from no fields)
        wf.run(ctx=Context.from_dict(wf, data))
