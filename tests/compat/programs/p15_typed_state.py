"""Typed state: Context[State] with a pydantic model, changed inside edit_state()."""

from pydantic import BaseModel
from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class CounterState(BaseModel):
    count: int = 0
    history: list[str] = []


class Bump(Event):
    label: str


class TypedStateFlow(Workflow):
    @step
    async def begin(self, ctx: Context[CounterState], ev: StartEvent) -> Bump:
        async with ctx.store.edit_state() as state:
            state.count += 1
            state.history.append("begin")
        return Bump(label=ev.label)

    @step
    async def bump(self, ctx: Context[CounterState], ev: Bump) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state.count += 10
            state.history.append(ev.label)
        state = await ctx.store.get_state()
        return StopEvent(result={"count": state.count, "history": state.history})


async def main(run):
    return await (await run(TypedStateFlow(timeout=10), label="bumped"))
