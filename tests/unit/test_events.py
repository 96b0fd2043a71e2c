"""Events: pydantic models with readable JSON payloads; every event takes undeclared fields."""

from __future__ import annotations

import msgspec
import pytest
from pydantic import ValidationError

from engine import Event, EventDecodeError, StartEvent, StopEvent
from engine.model.events import decode_event, encode_event, event_fields
from engine.model.records import RawRecord
from engine.wire.codec import decode_record


class Chunk(Event):
    text: str
    index: int = 0


def test_events_are_mutable_keyword_only_and_validated() -> None:
    # Deliberate change (issue 18): events were frozen msgspec Structs; they are now mutable
    # pydantic models, as llama-index-workflows' events are. Construction validates.
    c = Chunk(text="a")
    c.text = "b"
    assert c.text == "b"
    with pytest.raises(TypeError):
        Chunk("a")  # type: ignore[misc]
    with pytest.raises(ValidationError, match="index"):
        Chunk(text="a", index="not a number")  # type: ignore[arg-type]


def test_payload_is_tagged_json_and_round_trips() -> None:
    data = encode_event(Chunk(text="hi", index=2))
    assert msgspec.json.decode(data) == {"$type": "Chunk", "text": "hi", "index": 2}
    assert decode_event(Chunk, data) == Chunk(text="hi", index=2)
    # The tag is optional on input (events published by hand); unknown fields are kept as
    # undeclared fields (every event takes them, as in llama-index-workflows).
    back = decode_event(Chunk, b'{"text": "x", "extra": 1}')
    assert back == Chunk(text="x", extra=1) and back.extra == 1  # type: ignore[attr-defined]


def test_bad_payload_raises_decode_error() -> None:
    with pytest.raises(EventDecodeError, match=r"Chunk.*\$\.index"):
        decode_event(Chunk, b'{"index": "not an int", "text": "t"}')
    with pytest.raises(EventDecodeError):
        decode_event(Chunk, b"not json")


def test_start_event_accepts_arbitrary_fields() -> None:
    s = StartEvent(topic="jazz", n=3)
    assert s.topic == "jazz" and s.n == 3  # type: ignore[attr-defined]
    assert s.get("missing", 5) == 5
    data = encode_event(s)
    assert msgspec.json.decode(data) == {"$type": "StartEvent", "topic": "jazz", "n": 3}
    back = decode_event(StartEvent, data)
    assert back.topic == "jazz"  # type: ignore[attr-defined]
    assert back == s
    # As llama-index-workflows' repr: declared fields only (a StartEvent declares none).
    assert repr(back) == "StartEvent()"


def test_start_event_subclass_keeps_typed_fields_and_extras() -> None:
    class Begin(StartEvent):
        path: str

    b = Begin(path="/x", verbose=True)
    assert event_fields(b) == {"path": "/x", "verbose": True}
    back = decode_event(Begin, encode_event(b))
    assert back.path == "/x" and back.verbose is True  # type: ignore[attr-defined]
    with pytest.raises(EventDecodeError):
        decode_event(Begin, b'{"verbose": true}')


def test_stop_event_result() -> None:
    assert msgspec.json.decode(encode_event(StopEvent(result={"a": [1]}))) == {
        "$type": "StopEvent",
        "result": {"a": [1]},
    }
    assert StopEvent("positional").result == "positional"  # as llama-index-workflows' StopEvent
    assert str(StopEvent(result=3)) == "3"


def test_decode_record_never_raises() -> None:
    good = RawRecord(3, "jetloom.run.wf.r1.evt.Chunk", {"Jl-Step": "s", "Jl-Trigger": "2"}, b'{"text":"t"}', 5)
    rec = decode_record(good, {"Chunk": Chunk})
    assert rec.body == Chunk(text="t") and rec.step == "s" and rec.trigger == 2 and rec.error is None
    bad = decode_record(RawRecord(4, "jetloom.run.wf.r1.evt.Chunk", {}, b"\xff", 6), {"Chunk": Chunk})
    assert bad.body is None and bad.error
    unknown_sys = decode_record(RawRecord(5, "jetloom.run.wf.r1.sys.Nope", {}, b"{}", 7))
    assert unknown_sys.error and "Nope" in unknown_sys.error
    not_run = decode_record(RawRecord(6, "other.subject", {}, b"{}", 7))
    assert not_run.error
    untyped = decode_record(RawRecord(7, "jetloom.run.wf.r1.out.Mystery", {}, b'{"a": 1}', 8))
    assert untyped.body == {"a": 1}
