"""Typed state: get_state() returns the model, set_state() replaces it; handler.ctx reads it
after the run."""

from pydantic import BaseModel, Field
from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent


class Profile(BaseModel):
    name: str = "anonymous"
    tags: list[str] = Field(default_factory=list)


class SetStateFlow(Workflow):
    @step
    async def work(self, ctx: Context[Profile], ev: StartEvent) -> StopEvent:
        before = await ctx.store.get_state()
        await ctx.store.set_state(Profile(name=ev.name, tags=["new"]))
        after = await ctx.store.get_state()
        return StopEvent(result={"before": before.model_dump(), "after": after.name})


async def main(run):
    handler = await run(SetStateFlow(timeout=10), name="grace")
    result = await handler
    state = await handler.ctx.store.get_state()
    return {"result": result, "final": state.model_dump(), "type": type(state).__name__}
