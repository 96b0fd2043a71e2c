"""A pydantic model as the run's result (StopEvent(result=model)): the caller gets the model."""

from pydantic import BaseModel
from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent


class Summary(BaseModel):
    title: str
    words: int
    keywords: list[str]


class SummaryFlow(Workflow):
    @step
    async def summarise(self, ev: StartEvent) -> StopEvent:
        words = ev.text.split()
        return StopEvent(result=Summary(title=words[0], words=len(words), keywords=sorted(set(words))[:3]))


async def main(run):
    result = await (await run(SummaryFlow(timeout=10), text="looms weave threads into cloth"))
    return {"type": type(result).__name__, "dump": result.model_dump()}
