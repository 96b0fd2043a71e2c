"""Three steps linked by custom events (the docs' joke workflow without an LLM)."""

from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class JokeEvent(Event):
    joke: str


class CritiqueEvent(Event):
    joke: str
    critique: str


class JokeFlow(Workflow):
    @step
    async def generate_joke(self, ev: StartEvent) -> JokeEvent:
        return JokeEvent(joke=f"Why did the {ev.topic} cross the road?")

    @step
    async def critique_joke(self, ev: JokeEvent) -> CritiqueEvent:
        return CritiqueEvent(joke=ev.joke, critique=f"{len(ev.joke)} characters, no punchline")

    @step
    async def finish(self, ev: CritiqueEvent) -> StopEvent:
        return StopEvent(result={"joke": ev.joke, "critique": ev.critique})


async def main(run):
    return await (await run(JokeFlow(timeout=10), topic="chicken"))
