"""A StopEvent subclass with typed fields: awaiting the handler gives the event itself."""

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent


class Answer(StopEvent):
    text: str
    confidence: float = 0.5


class AnswerFlow(Workflow):
    @step
    async def answer(self, ev: StartEvent) -> Answer:
        return Answer(text=f"42 is the answer to {ev.question}", confidence=0.9)


async def main(run):
    result = await (await run(AnswerFlow(timeout=10), question="everything"))
    return {"type": type(result).__name__, "text": result.text, "confidence": result.confidence}
