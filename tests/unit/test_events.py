"""Events: frozen msgspec Structs with readable JSON payloads; StartEvent takes any field."""

from __future__ import annotations

import msgspec
import pytest

from engine import Event, EventDecodeError, StartEvent, StopEvent
from engine.model.events import decode_event, encode_event, event_fields
from engine.model.records import RawRecord
from engine.wire.codec import decode_record


class Chunk(Event):
    text: str
    index: int = 0


def test_events_are_frozen_and_keyword_only() -> None:
    c = Chunk(text="a")
    with pytest.raises(AttributeError):
        c.text = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Chunk("a")  # type: ignore[misc]


def test_payload_is_tagged_json_and_round_trips() -> None:
    data = encode_event(Chunk(text="hi", index=2))
    assert msgspec.json.decode(data) == {"$type": "Chunk", "text": "hi", "index": 2}
    assert decode_event(Chunk, data) == Chunk(text="hi", index=2)
    # The tag is optional on input (events published by hand), unknown fields are ignored.
    assert decode_event(Chunk, b'{"text": "x", "extra": 1}') == Chunk(text="x")


def test_bad_payload_raises_decode_error() -> None:
    with pytest.raises(EventDecodeError, match="Chunk"):
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
    assert "topic='jazz'" in repr(back)


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
