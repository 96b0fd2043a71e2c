"""A pydantic BaseModel (and a list of them) inside an event, as retrieval workflows carry
documents with scores."""

from pydantic import BaseModel
from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Doc(BaseModel):
    doc_id: str
    text: str
    metadata: dict[str, str] = {}


class Scored(BaseModel):
    doc: Doc
    score: float


class Retrieved(Event):
    query: str
    hits: list[Scored]
    best: Doc | None = None


class NestedModelFlow(Workflow):
    @step
    async def retrieve(self, ev: StartEvent) -> Retrieved:
        docs = [Doc(doc_id=str(i), text=f"doc about {w}", metadata={"w": w}) for i, w in enumerate(ev.words)]
        hits = [Scored(doc=d, score=round(1.0 / (i + 1), 3)) for i, d in enumerate(docs)]
        return Retrieved(query=ev.query, hits=hits, best=docs[0])

    @step
    async def rank(self, ev: Retrieved) -> StopEvent:
        assert isinstance(ev.hits[0], Scored) and isinstance(ev.best, Doc)
        return StopEvent(result=[(h.doc.doc_id, h.doc.metadata["w"], h.score) for h in ev.hits])


async def main(run):
    return await (await run(NestedModelFlow(timeout=10), query="q", words=["cats", "dogs", "owls"]))
