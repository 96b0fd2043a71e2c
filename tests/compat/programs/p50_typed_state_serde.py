"""Typed state through to_dict()/from_dict(): a second run resumed from the first run's dict
sees the first run's state model."""

import json

from pydantic import BaseModel
from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent


class Tally(BaseModel):
    total: int = 0
    runs: list[str] = []


class TallyFlow(Workflow):
    @step
    async def add(self, ctx: Context[Tally], ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state.total += ev.amount
            state.runs.append(ev.label)
        return StopEvent(result=(await ctx.store.get_state()).total)


async def main(run):
    wf = TallyFlow(timeout=10)
    first = await run(wf, amount=3, label="first")
    out = [await first]
    data = json.loads(json.dumps(first.ctx.to_dict()))
    second = await run(wf, ctx=Context.from_dict(wf, data), amount=4, label="second")
    out.append(await second)
    state = await second.ctx.store.get_state()
    out.append(state.runs)
    return out
