"""Events: the typed messages steps consume and produce.

Events are frozen, keyword-only ``msgspec.Struct`` classes, tagged by class name: the JSON payload
carries ``"$type": "<ClassName>"`` so a record read with the NATS CLI says what it is. Because they
live in the event log forever, persisted event types follow msgspec's schema-evolution rules:
append new fields with defaults, never change a field's annotation, never reuse a removed name.

``StartEvent`` (and its subclasses) also accept arbitrary keyword fields, as users of
llama-index-workflows expect (``StartEvent(topic="x").topic``); undeclared fields are kept on the
instance and merged into its payload.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any, ClassVar, cast

import msgspec

from engine.model.errors import EventDecodeError, EventValidationError

__all__ = [
    "TAG_FIELD",
    "Event",
    "EventMeta",
    "HumanResponseEvent",
    "InputRequiredEvent",
    "StartEvent",
    "StopEvent",
    "class_path",
    "decode_event",
    "encode_checked",
    "encode_event",
    "event_fields",
    "event_from_fields",
    "event_name",
    "known_event",
    "registry",
]

TAG_FIELD = "$type"

_ALL_EVENTS: dict[str, type[Event]] = {}
_BY_PATH: dict[str, type[Event]] = {}


def class_path(cls: type) -> str:
    """``module:QualName`` of a class (recorded on stream output, whose types a workflow does not
    declare, so readers can tell apart two event classes with the same name)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def known_event(name: str, path: str | None = None) -> type[Event] | None:
    """The event class defined in this process at ``path`` (``module:QualName``), else the one
    last defined under ``name``; ``None`` if there is none. Never imports anything."""
    if path is not None:
        cls = _BY_PATH.get(path)
        if cls is not None:
            return cls
    return _ALL_EVENTS.get(name)


class EventMeta(msgspec.StructMeta):
    """Metaclass of every event: makes subclasses frozen and keyword-only by default, and lets
    "open" events (``__jl_open__ = True``, i.e. ``StartEvent``) take undeclared keyword fields."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kwargs: Any):  # noqa: N804
        kwargs.setdefault("kw_only", True)
        kwargs.setdefault("frozen", True)
        cls = super().__new__(mcls, name, bases, ns, **kwargs)
        _ALL_EVENTS[name] = cast("type[Event]", cls)  # the latest definition of a name wins (module reloads)
        _BY_PATH[class_path(cls)] = cast("type[Event]", cls)
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if not getattr(cls, "__jl_open__", False):
            return super().__call__(*args, **kwargs)
        declared = cls.__struct_fields__
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in declared}
        obj = super().__call__(*args, **kwargs)
        obj.__dict__.update(extra)
        return obj


class Event(msgspec.Struct, metaclass=EventMeta, tag=True, tag_field=TAG_FIELD):
    """Base class of workflow events. Subclass it and declare fields with annotations::

        class Chunk(Event):
            text: str
            index: int = 0
    """

    __jl_open__: ClassVar[bool] = False


class StartEvent(Event, dict=True):
    """The event a run starts with. Accepts arbitrary keyword fields (``StartEvent(topic="x")``);
    subclass it to declare typed fields (undeclared ones are still accepted)."""

    __jl_open__: ClassVar[bool] = True

    def __repr__(self) -> str:
        fields = {**{f: getattr(self, f) for f in self.__struct_fields__}, **self.__dict__}
        inner = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{type(self).__name__}({inner})"

    def get(self, name: str, default: Any = None) -> Any:
        """Field ``name`` (declared or not), or ``default`` when absent."""
        return getattr(self, name, default)


class StopEvent(Event):
    """Returning one ends the run; ``result`` (any msgspec-encodable value) is the run's result.
    Subclasses may declare more fields; the handler then returns the event itself."""

    result: Any = None


class HumanResponseEvent(Event):
    """Base of events that come from outside the workflow (a person, another system), sent with
    ``POST /runs/{id}/events`` or ``RunHandle.send_event``. A step may accept a subclass that no
    step produces (as in llama-index-workflows, whose ``HumanResponseEvent`` this mirrors)."""


class InputRequiredEvent(Event):
    """Base of events a step writes to the stream to ask for outside input (llama-index-workflows'
    ``InputRequiredEvent``)."""


def event_name(cls: type[Event]) -> str:
    """The name an event type has in subjects, headers and payloads: its class name."""
    return cls.__name__


def event_fields(ev: Event) -> dict[str, Any]:
    """The event's fields as JSON-ready builtins (declared fields plus, for open events, extras)."""
    data = msgspec.to_builtins(ev)
    data.pop(TAG_FIELD, None)
    if type(ev).__jl_open__ and ev.__dict__:
        data.update(msgspec.to_builtins(ev.__dict__))
    return data


_encoder = msgspec.json.Encoder()


def encode_event(ev: Event) -> bytes:
    """Encode an event to its JSON payload.

    Raises:
        TypeError: a field holds a value msgspec cannot encode.
    """
    if type(ev).__jl_open__ and ev.__dict__:
        return _encoder.encode({TAG_FIELD: event_name(type(ev)), **event_fields(ev)})
    return _encoder.encode(ev)


@lru_cache(maxsize=4096)
def _decoder(cls: type[Event]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(dict[str, Any] if cls.__jl_open__ else cls)


def decode_event(cls: type[Event], data: bytes) -> Event:
    """Decode a JSON payload to an instance of ``cls``. Unknown fields are ignored, except on open
    events, where they become extra fields.

    Raises:
        EventDecodeError: the payload is not JSON or does not match ``cls``'s fields.
    """
    try:
        if not cls.__jl_open__:
            return _decoder(cls).decode(data)
        raw = _decoder(cls).decode(data)
        raw.pop(TAG_FIELD, None)
        declared = {k: raw.pop(k) for k in list(raw) if k in cls.__struct_fields__}
        obj = msgspec.convert(declared, cls)
        obj.__dict__.update(raw)
        return obj
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EventDecodeError(f"payload is not a valid {cls.__name__}: {exc}") from exc


def encode_checked(ev: Event) -> bytes:
    """``encode_event(ev)``, checked against ``ev``'s type: the payload is decoded back as its
    class would be by the step that consumes it (msgspec Structs do not check field types on
    construction, so ``Chunk(count="x")`` with ``count: int`` is built without complaint). It costs
    one decode of the payload (``tests/unit/test_event_checks.py``).

    Raises:
        EventValidationError: a field does not match its annotation; the message names the event
            type and the field (``$.count``).
        TypeError: a field holds a value msgspec cannot encode.
    """
    data = encode_event(ev)
    cls = type(ev)
    try:
        if not cls.__jl_open__:
            _decoder(cls).decode(data)
        else:
            raw = _decoder(cls).decode(data)
            msgspec.convert({k: v for k, v in raw.items() if k in cls.__struct_fields__}, cls)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EventValidationError(f"event {event_name(cls)} does not match its type: {exc}") from exc
    return data


def event_from_fields(cls: type[Event], fields: dict[str, Any]) -> Event:
    """Build an event of ``cls`` from plain fields (validated as msgspec would decode them).

    Raises:
        EventDecodeError: the fields do not match ``cls``.
    """
    try:
        if not cls.__jl_open__:
            return msgspec.convert(fields, cls)
        fields = dict(fields)
        fields.pop(TAG_FIELD, None)
        declared = {k: fields.pop(k) for k in list(fields) if k in cls.__struct_fields__}
        obj = msgspec.convert(declared, cls)
        obj.__dict__.update(fields)
        return obj
    except msgspec.ValidationError as exc:
        raise EventDecodeError(f"fields are not a valid {cls.__name__}: {exc}") from exc


def registry(types: Iterable[type[Event]]) -> dict[str, type[Event]]:
    """Map event names to classes."""
    return {event_name(t): t for t in types}
