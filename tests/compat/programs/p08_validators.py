"""pydantic validators on an event: a field_validator normalises, a model_validator checks."""

from pydantic import field_validator, model_validator
from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Query(Event):
    text: str
    top_k: int = 3

    @field_validator("text")
    @classmethod
    def strip_text(cls, value: str) -> str:
        return value.strip().lower()

    @model_validator(mode="after")
    def check_top_k(self) -> "Query":
        if self.top_k < 1:
            raise ValueError("top_k must be positive")
        return self


class ValidatorFlow(Workflow):
    @step
    async def parse(self, ev: StartEvent) -> Query:
        return Query(text=ev.text, top_k=ev.top_k)

    @step
    async def answer(self, ev: Query) -> StopEvent:
        return StopEvent(result={"text": ev.text, "top_k": ev.top_k})


async def main(run):
    wf = ValidatorFlow(timeout=10)
    out = [await (await run(wf, text="  Hello World ", top_k=5))]
    try:
        await (await run(wf, text="x", top_k=0))
        out.append("no error")
    except Exception as exc:  # the step's ValidationError fails the run
        out.append("failed" if "top_k must be positive" in str(exc) else f"other: {exc}")
    return out
