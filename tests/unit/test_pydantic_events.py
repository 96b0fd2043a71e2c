"""Events with pydantic's semantics (issue 18): what llama-index-workflows' events accept, encoded
to and decoded from jetloom's payloads."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from engine import (
    Context,
    DeadLetteredError,
    Event,
    EventDecodeError,
    HumanResponseEvent,
    InputRequiredEvent,
    MemoryLog,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)
from engine.model.events import (
    CollectionReleaseEvent,
    StepFailedEvent,
    UnreconstructedException,
    WorkflowFailedEvent,
    decode_event,
    encode_checked,
    encode_event,
    event_fields,
    event_from_fields,
)
from engine.model.records import OutMessage
from engine.runtime.describe import fields_schema
from engine.runtime.executor import Executor
from engine.runtime.inprocess import start_run
from engine.wire.headers import H_RUN, H_TYPE
from engine.wire.subjects import run_subject


class Doc(BaseModel):
    text: str
    score: float = 0.0


class Found(Event):
    query: str
    docs: list[Doc] = Field(default_factory=list, description="what the search found")
    best: Doc | None = None
    note: str | None = None


class Bounded(Event):
    n: int

    @field_validator("n")
    @classmethod
    def _small(cls, v: int) -> int:
        if v > 10:
            raise ValueError("n must be at most 10")
        return v


class Ordered(Event):
    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> Ordered:
        if self.low > self.high:
            raise ValueError("low above high")
        return self


def round_trip(ev: Event) -> Event:
    return decode_event(type(ev), encode_checked(ev))


def test_default_factory_description_and_optional() -> None:
    a, b = Found(query="q"), Found(query="q")
    assert a.docs == [] and a.docs is not b.docs  # a fresh list each, not a shared FieldInfo
    assert a.best is None and a.note is None
    assert msgspec.json.decode(encode_event(a)) == {
        "$type": "Found",
        "query": "q",
        "docs": [],
        "best": None,
        "note": None,
    }
    schema = fields_schema(Found)
    assert schema["properties"]["docs"]["description"] == "what the search found"
    assert schema["required"] == ["query"]
    v = Draft202012Validator(schema)
    assert v.is_valid({"query": "q", "docs": [{"text": "t"}], "anything": 1})
    assert not v.is_valid({"query": "q", "docs": [{"score": 1.0}]})


def test_validators_run_on_construction_and_on_decode() -> None:
    assert Bounded(n=3).n == 3
    with pytest.raises(ValidationError, match="at most 10"):
        Bounded(n=11)
    with pytest.raises(ValidationError, match="low above high"):
        Ordered(low=2, high=1)
    with pytest.raises(EventDecodeError, match=r"Bounded.*at most 10.*\$\.n"):
        decode_event(Bounded, b'{"$type":"Bounded","n":11}')
    with pytest.raises(EventDecodeError, match="low above high"):
        decode_event(Ordered, b'{"low":2,"high":1}')
    with pytest.raises(EventDecodeError, match="Bounded"):
        event_from_fields(Bounded, {"n": 12})


def test_nested_models_round_trip() -> None:
    ev = Found(query="q", docs=[Doc(text="a", score=0.5), Doc(text="b")], best=Doc(text="a", score=0.5))
    back = round_trip(ev)
    assert back == ev
    assert isinstance(back, Found) and isinstance(back.docs[0], Doc) and back.best == Doc(text="a", score=0.5)
    assert event_from_fields(Found, event_fields(ev)) == ev


def test_llama_index_types_round_trip() -> None:
    schema = pytest.importorskip("llama_index.core.schema")
    llms = pytest.importorskip("llama_index.core.llms")

    class Retrieved(Event):
        docs: list[schema.Document]
        hits: list[schema.NodeWithScore] = Field(default_factory=list)
        message: llms.ChatMessage | None = None

    ev = Retrieved(
        docs=[schema.Document(text="hello", metadata={"k": 1})],
        hits=[schema.NodeWithScore(node=schema.TextNode(text="n"), score=0.5)],
        message=llms.ChatMessage(role="user", content="hi"),
    )
    back = round_trip(ev)
    assert isinstance(back, Retrieved)
    assert back.docs[0].text == "hello" and back.docs[0].metadata == {"k": 1}
    assert back.docs[0].doc_id == ev.docs[0].doc_id
    # NodeWithScore.node is declared as the abstract BaseNode: rebuilt from the dump's class_name
    assert type(back.hits[0].node) is schema.TextNode and back.hits[0].score == 0.5
    assert back.message is not None and back.message.content == "hi"
    assert back == ev


def test_undeclared_fields_and_dict_access_as_the_reference() -> None:
    ev = Found(query="q", page=2)
    assert ev.page == 2  # type: ignore[attr-defined]
    assert ev["page"] == 2 and ev.get("page") == 2 and ev.get("nope", 0) == 0
    assert "page" in ev and "query" not in ev  # the mapping holds the undeclared fields only
    ev.extra = "x"  # type: ignore[attr-defined]
    ev["more"] = [1]
    assert dict(ev.items()) == {"page": 2, "extra": "x", "more": [1]} and len(ev) == 3
    assert list(ev) == ["page", "extra", "more"] and ev.to_dict() == {"page": 2, "extra": "x", "more": [1]}
    assert bool(Found(query="q"))  # truthy though its mapping is empty
    data = msgspec.json.decode(encode_event(ev))
    assert data["page"] == 2 and data["more"] == [1] and data["query"] == "q"
    back = decode_event(Found, encode_event(ev))
    assert back["extra"] == "x" and back == ev
    with pytest.raises(KeyError):
        ev["query"]
    with pytest.raises(AttributeError):
        _ = ev.missing  # type: ignore[attr-defined]


def test_model_dump_json_and_copy_as_the_reference() -> None:
    ev = Found(query="q", docs=[Doc(text="a")], page=2)
    assert ev.model_dump() == {
        "query": "q",
        "docs": [{"text": "a", "score": 0.0}],
        "best": None,
        "note": None,
        "_data": {"page": 2},
    }
    assert msgspec.json.decode(ev.model_dump_json()) == ev.model_dump(mode="json")
    assert Found(query="q").model_dump_json() == '{"query":"q","docs":[],"best":null,"note":null}'
    copy = ev.model_copy(update={"query": "r"})
    assert copy.query == "r" and copy.page == 2 and ev.query == "q"  # type: ignore[attr-defined]
    assert StopEvent(result=1).model_dump() == {"result": 1}
    assert StopEvent().model_dump() == {}
    assert repr(StopEvent(result=1, tag="t")) == "StopEvent(tag='t', result=1)"


def test_dumps_match_llama_index_workflows() -> None:
    ref = pytest.importorskip("workflows.events")

    class RefFound(ref.Event):  # type: ignore[misc,name-defined]
        query: str
        docs: list[Doc] = Field(default_factory=list)

    for kwargs in ({"query": "q"}, {"query": "q", "docs": [Doc(text="a")], "page": 3}):
        ours, theirs = Found(**kwargs), RefFound(**kwargs)
        mine = ours.model_dump()
        mine.pop("best"), mine.pop("note")
        assert mine == theirs.model_dump()
        assert ("page" in ours) == ("page" in theirs) and ours.get("page") == theirs.get("page")
        assert len(ours) == len(theirs) and list(ours.keys()) == list(theirs.keys())
    for ours_s, theirs_s in ((StopEvent(result="r"), ref.StopEvent(result="r")), (StopEvent(), ref.StopEvent())):
        assert ours_s.model_dump() == theirs_s.model_dump() and str(ours_s) == str(theirs_s)
        assert repr(ours_s) == repr(theirs_s)
    assert repr(StartEvent(topic="x")) == repr(ref.StartEvent(topic="x"))
    assert StartEvent(topic="x").model_dump() == ref.StartEvent(topic="x").model_dump()


def test_open_fields_of_human_input_events() -> None:
    ask = InputRequiredEvent(prefix="Name? ")
    answer = HumanResponseEvent(response="Ada")
    assert ask.prefix == "Name? " and answer.response == "Ada"  # type: ignore[attr-defined]
    assert round_trip(answer).response == "Ada"  # type: ignore[attr-defined]


def test_stop_event_model_result_comes_back_as_the_model() -> None:
    stop = StopEvent(result=Doc(text="t", score=1.0))
    data = msgspec.json.decode(encode_event(stop))
    assert data["result"] == {"text": "t", "score": 1.0} and data["$result_class"].endswith(":Doc")
    back = decode_event(StopEvent, encode_event(stop))
    assert back.result == Doc(text="t", score=1.0) and "$result_class" not in back
    assert event_from_fields(StopEvent, event_fields(stop)).result == Doc(text="t", score=1.0)
    # a reader without the class's module keeps the fields
    foreign = b'{"$type":"StopEvent","$result_class":"no.such.module:Doc","result":{"text":"t"}}'
    assert decode_event(StopEvent, foreign).result == {"text": "t"}


def test_serializable_exceptions_and_events() -> None:
    failed = WorkflowFailedEvent(step_name="s", exception=ValueError("boom"), attempts=2)
    back = round_trip(failed)
    assert isinstance(back, WorkflowFailedEvent)
    assert type(back.exception) is ValueError and str(back.exception) == "boom" and back.attempts == 2
    payload = encode_event(failed).replace(b"builtins.ValueError", b"gone.module.Error")
    lost = decode_event(WorkflowFailedEvent, payload)
    assert isinstance(lost.exception, UnreconstructedException)  # type: ignore[attr-defined]
    assert lost.exception.original_type == "gone.module.Error" and str(lost.exception) == "boom"  # type: ignore[attr-defined]
    batch = CollectionReleaseEvent(events=[Bounded(n=1), Found(query="q")])
    again = round_trip(batch)
    assert again == batch and isinstance(again.events[1], Found)  # type: ignore[attr-defined]


def test_unencodable_values_raise_type_error() -> None:
    class Holder(Event):
        thing: Any = None

    with pytest.raises(TypeError, match="Holder"):
        encode_event(Holder(thing=object()))


class Ask(BaseModel):
    question: str
    hits: list[Doc]


class Search(Workflow):
    @step
    async def find(self, ev: StartEvent) -> Found:
        return Found(query=ev.query, docs=[Doc(text=ev.query.upper(), score=0.9)], trace="t1")

    @step
    async def answer(self, ev: Found) -> StopEvent:
        assert isinstance(ev.docs[0], Doc) and ev.trace == "t1"  # type: ignore[attr-defined]
        return StopEvent(result=Ask(question=ev.query, hits=ev.docs))


async def test_a_run_carries_models_and_returns_the_result_model() -> None:
    got = await asyncio.wait_for(Search(timeout=10, log=MemoryLog()).run(query="jazz"), 10)
    assert got == Ask(question="jazz", hits=[Doc(text="JAZZ", score=0.9)])


class Knock(HumanResponseEvent):
    n: int

    @field_validator("n")
    @classmethod
    def _small(cls, v: int) -> int:
        if v > 10:
            raise ValueError("n must be at most 10")
        return v


class Gate(Workflow):
    @step
    async def wait(self, ctx: Context, ev: StartEvent) -> None:
        return None

    @step
    async def go(self, ev: Knock) -> StopEvent:
        return StopEvent(result=ev.n)


async def _until(check: Any, what: str) -> None:
    async with asyncio.timeout(10):
        while not await check():
            await asyncio.sleep(0.01)


async def test_a_payload_failing_a_validator_is_dead_lettered() -> None:
    log = MemoryLog()
    ex = Executor(Gate(), log)
    await ex.start()
    try:
        handler = start_run(log, Gate, start_event=None, run_id=None, fields={}, timeout=10)

        async def started() -> bool:
            return bool(await log.read("Gate", handler.run_id))

        await _until(started, "the run started")
        subject = run_subject(log.prefix, "Gate", handler.run_id, "evt", "Knock")
        bad = OutMessage(subject, b'{"$type":"Knock","n":99}', {H_RUN: handler.run_id, H_TYPE: "Knock"})
        await log.append([bad])
        with pytest.raises(DeadLetteredError) as dead:
            await asyncio.wait_for(handler, 10)
        assert dead.value.step == "go" and subject in dead.value.message
        assert "at most 10" in str(dead.value)
    finally:
        await ex.stop(grace=0)


def test_step_failed_event_has_the_reference_fields_and_reads_old_payloads() -> None:
    built = StepFailedEvent(
        step_name="s", input_event=Bounded(n=2), exception=KeyError("k"), attempts=3, elapsed_seconds=0.5
    )
    assert built.step == "s" and built.error_type == "builtins.KeyError" and built.event == {"n": 2}
    assert built.failed_at.tzinfo is not None
    back = round_trip(built)
    assert isinstance(back, StepFailedEvent)
    assert back.input_event == Bounded(n=2) and type(back.exception) is KeyError and back.attempts == 3
    assert "input_event" not in msgspec.json.decode(encode_event(built))  # derived, not written twice
    # a payload written before the reconciliation (jetloom's fields only, "step")
    old = (
        b'{"$type":"StepFailedEvent","step":"s","trigger":4,"error_type":"gone.Error","message":"m",'
        b'"attempts":1,"event_type":"Bounded","event":{"n":1},"traceback":"tb"}'
    )
    legacy = decode_event(StepFailedEvent, old)
    assert isinstance(legacy, StepFailedEvent)
    assert legacy.step_name == "s" and legacy.trigger == 4 and legacy.input_event == Bounded(n=1)
    assert isinstance(legacy.exception, UnreconstructedException) and str(legacy.exception) == "m"


def test_decoded_events_share_a_fields_set_until_assigned() -> None:
    a = decode_event(Bounded, b'{"n":1}')
    b = decode_event(Bounded, b'{"n":2}')
    assert a.model_fields_set == {"n"} and a.model_fields_set is b.model_fields_set  # (one object for the GC)
    a.tag = "x"  # type: ignore[attr-defined]  # an undeclared field
    a.n = 3  # type: ignore[attr-defined]  # a Bounded
    assert b.model_fields_set == {"n"} and b.model_dump(exclude_unset=True) == {"n": 2}
    assert a.model_dump(exclude_unset=True) == {"n": 3, "_data": {"tag": "x"}}
    c = decode_event(Found, b'{"query":"q"}')
    assert c.model_dump(exclude_unset=True) == {"query": "q"}
    assert c.model_copy(update={"note": "n"}).model_fields_set == {"query", "note"}
    assert c.model_fields_set == {"query"}
