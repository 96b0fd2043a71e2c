"""Token streaming as the docs' LLM examples do it: many small delta events, joined by the
caller; the streamed result equals the run's result."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Delta(Event):
    delta: str


class TokenFlow(Workflow):
    @step
    async def generate(self, ctx: Context, ev: StartEvent) -> StopEvent:
        text = ""
        for token in ev.prompt.split():
            text += token.upper() + " "
            ctx.write_event_to_stream(Delta(delta=token.upper() + " "))
        return StopEvent(result=text.strip())


async def main(run):
    handler = await run(TokenFlow(timeout=10), prompt="stream me some tokens please")
    joined = ""
    async for ev in handler.stream_events():
        if isinstance(ev, Delta):
            joined += ev.delta
    return {"joined": joined.strip(), "result": await handler}
