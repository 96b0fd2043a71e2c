"""Events: the typed messages steps consume and produce.

Events are pydantic models, as in llama-index-workflows (``workflows.events``): fields are declared
with annotations and take what pydantic takes (defaults, ``Field(default_factory=...,
description=...)``, ``Optional``, validators, nested ``BaseModel`` values); a value that does not
match its annotation raises pydantic's ``ValidationError`` when the event is built. Events are
mutable, as there. Every event also accepts undeclared keyword fields, kept beside the declared
ones and readable as attributes and, as with the reference's ``DictLikeModel``, as a mapping
(``ev["k"]``, ``ev.get("k")``, ``"k" in ev``, ``keys()``: the undeclared fields only).

On the wire an event is JSON: ``{"$type": "<ClassName>", <declared fields>, <undeclared fields>}``,
written by pydantic-core's serializer and read back by its validator, so a record read with the
NATS CLI says what it is. The log's own records stay msgspec Structs (``engine.model.records``).
Because events live in the log forever, persisted event types follow these rules: add new fields
with defaults, never change a field's annotation incompatibly, never reuse a removed name (a
removed field's value, read back, becomes an undeclared field).
"""

from __future__ import annotations

import builtins
import inspect
import sys
import weakref
from collections.abc import ItemsView, Iterable, Iterator, KeysView, ValuesView
from datetime import UTC, datetime
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import (
    PydanticSerializationError,
    PydanticSerializationUnexpectedValue,
    from_json,
    to_json,
)

from engine.model.errors import EventDecodeError, EventValidationError

__all__ = [
    "RESULT_CLASS_FIELD",
    "TAG_FIELD",
    "CollectionReleaseEvent",
    "DictLikeModel",
    "Event",
    "EventMeta",
    "EventType",
    "HumanResponseEvent",
    "IdleReleasedEvent",
    "InputRequiredEvent",
    "InternalDispatchEvent",
    "SerializableEvent",
    "SerializableEventType",
    "SerializableException",
    "SerializableOptionalEvent",
    "SerializableOptionalException",
    "StartEvent",
    "StepState",
    "StepFailedEvent",
    "StepStateChanged",
    "StopEvent",
    "UnhandledEvent",
    "UnreconstructedException",
    "WorkflowCancelledEvent",
    "WorkflowFailedEvent",
    "WorkflowIdleEvent",
    "WorkflowTimedOutEvent",
    "class_path",
    "decode_event",
    "encode_checked",
    "encode_event",
    "event_fields",
    "event_from_fields",
    "event_name",
    "known_event",
    "registry",
    "resolve_class",
]

TAG_FIELD = "$type"
# Beside a ``StopEvent``'s ``result`` that is a pydantic model (``result`` is typed ``Any``): the
# model's class as ``module:QualName``, so a reader that has the class gets the model back.
RESULT_CLASS_FIELD = "$result_class"

_ALL_EVENTS: dict[str, type[Event]] = {}
# Events whose declared fields may no longer match their annotations (assigned after validation,
# or built with ``model_construct``), by ``id``: ``encode_checked`` checks only these.
_UNVALIDATED: weakref.WeakValueDictionary[int, DictLikeModel] = weakref.WeakValueDictionary()
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


def resolve_class(path: str) -> type | None:
    """The class at ``path`` (``module:QualName`` or ``module.QualName``) if its module is already
    imported in this process, else ``None``. Never imports anything (a path read from the log
    must not make a reader run a module's code)."""
    if ":" in path:
        module, _, qual = path.partition(":")
        candidates = [(module, qual)]
    else:  # ``module.QualName``: try every split, longest module first
        parts = path.split(".")
        candidates = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    for module, qual in candidates:
        obj: Any = sys.modules.get(module)
        if obj is None:
            continue
        for name in qual.split("."):
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if isinstance(obj, type):
            return obj
    return None


class DictLikeModel(BaseModel):
    """A pydantic model that keeps undeclared keyword fields (llama-index-workflows'
    ``DictLikeModel``): ``M(declared=1, other=2).other == 2``; undeclared fields are also set by
    assignment (``m.other = 3``) and read as a mapping (``m["other"]``, ``m.get("other")``,
    ``"other" in m``, ``len(m)``, ``keys()``, ``values()``, ``items()``, ``to_dict()``: the
    undeclared fields only, as there). ``model_dump()`` puts them under ``"_data"``, as there; on
    the wire they sit beside the declared fields.
    """

    model_config = ConfigDict(
        extra="allow", arbitrary_types_allowed=True, ser_json_bytes="base64", val_json_bytes="base64"
    )

    def _extras(self) -> dict[str, Any]:
        extra = self.__pydantic_extra__
        if extra is None:
            extra = {}
            object.__setattr__(self, "__pydantic_extra__", extra)
        return extra

    def __getitem__(self, key: str) -> Any:
        return self._extras()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._extras()[key] = value

    def __setattr__(self, name: str, value: Any) -> None:
        if id(self.__pydantic_fields_set__) in _SHARED_SET_IDS:  # (a decoded event's: see _finish)
            object.__setattr__(self, "__pydantic_fields_set__", set(self.__pydantic_fields_set__))
        super().__setattr__(name, value)
        if name in type(self).model_fields:  # (pydantic does not validate assignments)
            _UNVALIDATED[id(self)] = self

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:
        """pydantic's ``model_construct`` (no validation); the instance is checked against its
        type when it is encoded for the log (``encode_checked``)."""
        made = super().model_construct(_fields_set, **values)
        _UNVALIDATED[id(made)] = made
        return made

    def get(self, key: str, default: Any = None) -> Any:
        """Undeclared field ``key``, or ``default`` when there is none."""
        return self._extras().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._extras()

    def keys(self) -> KeysView[str]:
        """Names of the undeclared fields."""
        return self._extras().keys()

    def values(self) -> ValuesView[Any]:
        """Values of the undeclared fields."""
        return self._extras().values()

    def items(self) -> ItemsView[str, Any]:
        """``(name, value)`` of the undeclared fields."""
        return self._extras().items()

    def __len__(self) -> int:
        return len(self._extras())

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # as the reference: iterates the undeclared names
        return iter(self._extras())

    def to_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The undeclared fields (the dict itself, not a copy)."""
        return self._extras()

    def __bool__(self) -> bool:
        return True  # (``__len__`` counts undeclared fields; an event is always truthy)

    def __repr_args__(self) -> Any:
        extra = self.__pydantic_extra__
        for key, value in super().__repr_args__():
            if not extra or key not in extra:
                yield key, value

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:  # (BaseModel's keywords, passed on)
        """pydantic's ``model_dump`` (same keywords), with the undeclared fields under ``"_data"``
        as llama-index-workflows dumps them."""
        data = super().model_dump(**kwargs)
        extra = self.__pydantic_extra__
        if extra:
            data["_data"] = {k: data.pop(k) for k in extra if k in data}
        return data

    def model_dump_json(self, **kwargs: Any) -> str:  # (BaseModel's keywords, passed on)
        """pydantic's ``model_dump_json`` (same keywords), shaped as ``model_dump``."""
        if not self.__pydantic_extra__:
            return super().model_dump_json(**kwargs)
        indent = kwargs.pop("indent", None)
        kwargs.pop("mode", None)
        return to_json(self.model_dump(mode="json", **kwargs), indent=indent).decode()


class Event(DictLikeModel):
    """Base class of workflow events. Subclass it and declare fields as on any pydantic model::

        class Chunk(Event):
            text: str
            index: int = 0
            tags: list[str] = Field(default_factory=list, description="labels")

    Build events with keywords (``Chunk(text="a")``; a positional argument is a ``TypeError``);
    undeclared keywords are kept (see ``DictLikeModel``).

    Raises:
        pydantic.ValidationError: on construction, a field value does not match its annotation
            (or a validator rejects it).
    """

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _ALL_EVENTS[cls.__name__] = cls  # the latest definition of a name wins (module reloads)
        _BY_PATH[class_path(cls)] = cls


_ALL_EVENTS["Event"] = Event
_BY_PATH[class_path(Event)] = Event

# The metaclass of every event (pydantic's model metaclass).
EventMeta = type(Event)
EventType = type[Event]


class StartEvent(Event):
    """The event a run starts with. Takes arbitrary keyword fields (``StartEvent(topic="x")``);
    subclass it to declare typed fields (undeclared ones are still taken)."""


_UNSET: Any = object()


class StopEvent(Event):
    """Returning one ends the run; ``result`` (any JSON-encodable value, or a pydantic model) is
    the run's result: ``StopEvent(result=x)`` or ``StopEvent(x)``, as llama-index-workflows'.
    Subclasses may declare more fields; the handler then returns the event itself.

    A ``result`` that is a pydantic model is read back as that model by a process in which its
    class's module is imported (the payload names the class, ``"$result_class"``); elsewhere it
    reads as the model's fields.
    """

    result: Any = None

    def __init__(self, result: Any = _UNSET, **data: Any) -> None:
        if result is not _UNSET:
            data["result"] = result
        super().__init__(**data)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:  # (BaseModel's keywords, passed on)
        """pydantic's ``model_dump`` without undeclared fields and without ``result`` when it is
        ``None``, as llama-index-workflows' ``StopEvent`` dumps."""
        data = BaseModel.model_dump(self, **kwargs)
        extra = self.__pydantic_extra__
        if extra:
            for key in extra:
                data.pop(key, None)
        if self.result is None and "result" in data and type(self).model_fields["result"].annotation is Any:
            del data["result"]
        return data

    def model_dump_json(self, **kwargs: Any) -> str:  # (BaseModel's keywords, passed on)
        """``model_dump`` as JSON (same keywords as pydantic's)."""
        indent = kwargs.pop("indent", None)
        kwargs.pop("mode", None)
        return to_json(self.model_dump(mode="json", **kwargs), indent=indent).decode()

    def __repr__(self) -> str:
        items = {**(self.__pydantic_extra__ or {}), **self.model_dump()}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in items.items())})"

    def __str__(self) -> str:
        return str(self.result)


class HumanResponseEvent(Event):
    """Base of events that come from outside the workflow (a person, another system), sent with
    ``POST /runs/{id}/events`` or ``RunHandle.send_event``; ``HumanResponseEvent(response="x")``.
    A step may accept a subclass that no step produces (as llama-index-workflows'
    ``HumanResponseEvent``)."""


class InputRequiredEvent(Event):
    """Base of events a step writes to the stream to ask for outside input;
    ``InputRequiredEvent(prefix="Name? ")`` (llama-index-workflows' ``InputRequiredEvent``)."""


# -- values that cross the wire inside events: events and exceptions ---------------------------------


def _serialize_event(ev: Event) -> dict[str, Any]:
    return {TAG_FIELD: event_name(type(ev)), "$class": class_path(type(ev)), **event_fields(ev)}


def _deserialize_event(data: Any) -> Event:
    if isinstance(data, Event):
        return data
    if not isinstance(data, dict) or not isinstance(data.get(TAG_FIELD), str):
        raise ValueError(f"an event is a JSON object with {TAG_FIELD!r}")
    fields = {k: v for k, v in data.items() if k != "$class"}
    cls = known_event(fields[TAG_FIELD], data.get("$class"))
    if cls is None:
        raise ValueError(f"unknown event type {fields[TAG_FIELD]!r}")
    return event_from_fields(cls, fields)


def _deserialize_optional_event(data: Any) -> Event | None:
    return None if data is None else _deserialize_event(data)


SerializableEvent = Annotated[
    Event, PlainSerializer(_serialize_event, return_type=Any), PlainValidator(_deserialize_event)
]
"""An ``Event`` field of any event class: serialized with its ``$type`` and ``$class``
(``module:QualName``), read back as that class when it is defined in the reading process
(llama-index-workflows' ``SerializableEvent``)."""

SerializableOptionalEvent = Annotated[
    Event | None,
    PlainSerializer(lambda ev: None if ev is None else _serialize_event(ev), return_type=Any),
    PlainValidator(_deserialize_optional_event),
]
"""``SerializableEvent`` or ``None``."""


def _deserialize_event_type(data: Any) -> type[Event]:
    if isinstance(data, type) and issubclass(data, Event):
        return data
    if isinstance(data, str):
        cls = known_event(data.rsplit(":", 1)[-1].rsplit(".", 1)[-1], data if ":" in data else None)
        if cls is not None:
            return cls
    raise ValueError(f"{data!r} names no event class defined in this process")


SerializableEventType = Annotated[
    type[Event],
    PlainSerializer(class_path, return_type=str),
    PlainValidator(_deserialize_event_type),
]
"""An event class as a field: serialized as its ``module:QualName``, read back as the class of that
path (else of that name) defined in the reading process, never imported (llama-index-workflows'
``SerializableEventType``)."""


class UnreconstructedException(Exception):
    """Stands for an exception read back from the log whose class is not available in the reading
    process (or cannot be built from its message), as llama-index-workflows'. ``str()`` is the
    original message; ``original_type`` the original qualified class name."""

    def __init__(self, message: str, *, original_type: str | None = None) -> None:
        super().__init__(message)
        self.original_type = original_type

    def __repr__(self) -> str:
        return f"UnreconstructedException(original_type={self.original_type!r}, {self.args[0]!r})"


def _serialize_exception(exc: BaseException) -> dict[str, str]:
    return {
        "exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "exception_message": str(exc),
    }


def _deserialize_exception(data: Any) -> BaseException:
    if isinstance(data, BaseException):
        return data
    if not isinstance(data, dict) or "exception_type" not in data:
        raise ValueError("an exception is a JSON object with 'exception_type' and 'exception_message'")
    qualified = str(data["exception_type"])
    message = str(data.get("exception_message", ""))
    if qualified.startswith("builtins."):
        cls: Any = getattr(builtins, qualified.removeprefix("builtins."), None)
    elif qualified == f"{__name__}.UnreconstructedException":
        cls = UnreconstructedException
    else:
        cls = resolve_class(qualified)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls is not UnreconstructedException:
        try:
            return cls(message)
        except Exception:  # noqa: BLE001  # a class that does not take one message: stand-in below
            pass
    return UnreconstructedException(message, original_type=qualified)


SerializableException = Annotated[
    Exception,
    PlainSerializer(_serialize_exception, return_type=dict[str, str]),
    PlainValidator(_deserialize_exception),
]
"""An exception field: serialized as ``{"exception_type": "module.QualName", "exception_message":
str(exc)}``, read back as that class built from the message where it is available, else as an
``UnreconstructedException`` (llama-index-workflows' ``SerializableException``)."""

SerializableOptionalException = Annotated[
    Exception | None,
    PlainSerializer(lambda exc: None if exc is None else _serialize_exception(exc), return_type=Any),
    PlainValidator(lambda data: None if data is None else _deserialize_exception(data)),
]
"""``SerializableException`` or ``None``."""


# -- the reference's other event types -----------------------------------------------------------


class WorkflowTimedOutEvent(StopEvent):
    """A run ended by its timeout (llama-index-workflows publishes it on the stream before
    ``WorkflowTimeoutError`` is raised). ``timeout``: seconds; ``active_steps``: steps that were
    running."""

    timeout: float
    active_steps: list[str]


class WorkflowCancelledEvent(StopEvent):
    """A run cancelled by its user (llama-index-workflows publishes it on the stream before
    ``WorkflowCancelledByUser`` is raised)."""


class IdleReleasedEvent(StopEvent):
    """llama-index-workflows' result of a run released because it was idle (never on the stream)."""


class WorkflowFailedEvent(StopEvent):
    """A run failed for good: step ``step_name`` raised ``exception`` after ``attempts`` attempts
    over ``elapsed_seconds`` seconds (``None`` when the failure is not a step's), as
    llama-index-workflows' ``WorkflowFailedEvent``."""

    step_name: str
    exception: SerializableException
    attempts: int | None = None
    elapsed_seconds: float | None = None


class StepFailedEvent(Event):
    """What the workflow's error handler step (``@catch_error``) receives when a step fails for
    good (its retry policy, if any, gave up). Whatever the handler returns continues the run (or
    ends it, with a ``StopEvent``); if the handler itself fails, the run fails.

    The fields of llama-index-workflows' ``StepFailedEvent``:
        step_name: the step that failed (also readable as ``step``; ``step=`` is accepted, and is
            the name older payloads use).
        input_event: the event the step was handling, rebuilt from ``event_type`` and ``event``
            where its class is defined in the reading process, else ``None``.
        exception: the exception, rebuilt from ``error_type`` and ``message`` (an
            ``UnreconstructedException`` where its class is not available); no traceback.
        attempts: attempts made, the failed last one included.
        elapsed_seconds: seconds from the first attempt to the failure (``0.0`` when unknown).
        failed_at: when the event was made (UTC), i.e. when the failure was handed over.

    And jetloom's, which are what the log carries: ``trigger`` (stream sequence of the handled
    event), ``error_type`` (qualified class name, ``"builtins.ValueError"``), ``message``
    (``str()`` of the exception), ``event_type`` and ``event`` (the handled event's name and
    fields), ``traceback`` (formatted). ``input_event`` and ``exception`` are not written: they
    are derived from these when the event is built or read; given at construction, they fill them.
    """

    step_name: str = Field(validation_alias=AliasChoices("step_name", "step"))
    input_event: SerializableOptionalEvent = Field(default=None, exclude=True)
    exception: SerializableOptionalException = Field(default=None, exclude=True)
    attempts: int = 1
    elapsed_seconds: float = 0.0
    failed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    trigger: int = 0
    error_type: str = ""
    message: str = ""
    event_type: str = ""
    event: dict[str, Any] = Field(default_factory=dict)
    traceback: str = ""

    @property
    def step(self) -> str:
        """``step_name`` (the name jetloom used first)."""
        return self.step_name

    @model_validator(mode="after")
    def _derive(self) -> StepFailedEvent:
        if self.exception is not None and not self.error_type:
            self.error_type = _serialize_exception(self.exception)["exception_type"]
            self.message = str(self.exception)
        elif self.exception is None and self.error_type:
            self.exception = _deserialize_exception(  # type: ignore[assignment]  # an Exception: built from the class of error_type
                {"exception_type": self.error_type, "exception_message": self.message}
            )
        if self.input_event is not None and not self.event_type:
            self.event_type = event_name(type(self.input_event))
            self.event = event_fields(self.input_event)
        elif self.input_event is None and self.event_type:
            cls = known_event(self.event_type)
            if cls is not None:
                try:
                    self.input_event = event_from_fields(cls, self.event)
                except EventDecodeError:
                    pass  # (the handled event does not decode here: input_event stays None)
        return self


class CollectionReleaseEvent(Event):
    """llama-index-workflows' internal trigger of a collecting step with one released batch
    (``events``); jetloom does not emit it."""

    events: list[SerializableEvent] = Field(default_factory=list)
    stream_id: str = ""
    binding_id: str = ""


class InternalDispatchEvent(Event):
    """Base of the events llama-index-workflows writes to the stream about the run itself (shown
    with ``stream_events(expose_internal=True)``); jetloom does not emit them."""


class WorkflowIdleEvent(InternalDispatchEvent):
    """The run went idle: every step waits for outside input (llama-index-workflows)."""


class UnhandledEvent(InternalDispatchEvent):
    """An event sent to the run that no step or wait took (llama-index-workflows)."""

    event_type: str = Field(description="Class name of the unhandled event.")
    qualified_name: str = Field(description="Fully qualified name of the event type.")
    step_name: str | None = Field(default=None, description="Target step name if the event was addressed to a step.")
    idle: bool = Field(description="Whether the workflow is idle after processing.")


class StepState(Enum):
    """A step's state in ``StepStateChanged`` (llama-index-workflows)."""

    PREPARING = "preparing"
    RUNNING = "running"
    NOT_RUNNING = "not_running"


class StepStateChanged(InternalDispatchEvent):
    """A step started or stopped running on a worker (llama-index-workflows)."""

    name: str = Field(description="Name of the step")
    step_state: StepState = Field(description="State of the step")
    worker_id: str = Field(description="ID of the worker that the step is running on")
    input_event_name: str = Field(description="Name of the input event")
    output_event_name: str | None = Field(default=None, description="Name of the output event")


# -- the wire ------------------------------------------------------------------------------------


def event_name(cls: type[Event]) -> str:
    """The name an event type has in subjects, headers and payloads: its class name."""
    return cls.__name__


@lru_cache(maxsize=4096)
def _head(cls: type[Event]) -> bytes:
    return b'{"' + TAG_FIELD.encode() + b'":' + to_json(cls.__name__)


@lru_cache(maxsize=4096)
def _result_is_any(cls: type[Event]) -> bool:
    field = cls.model_fields.get("result")
    return field is not None and field.annotation is Any


def _result_class(ev: Event) -> str | None:
    """The class path to record beside a stop event's ``result`` that is a pydantic model."""
    if isinstance(ev, StopEvent) and isinstance(ev.result, BaseModel) and _result_is_any(type(ev)):
        return class_path(type(ev.result))
    return None


def _to_json(ev: Event, check: bool) -> bytes:
    cls = type(ev)
    try:
        body = cls.__pydantic_serializer__.to_json(ev, warnings="error" if check else False)
    except (PydanticSerializationError, PydanticSerializationUnexpectedValue) as exc:
        # (with warnings="error", a value that does not match its annotation is reported as a
        # serialization error listing pydantic's "unexpected value" warnings)
        if check and "UnexpectedValue" in str(exc):
            raise EventValidationError(f"event {event_name(cls)} does not match its type: {_mismatch(ev)}") from exc
        raise TypeError(f"event {event_name(cls)} does not encode: {exc}") from exc
    if body[:1] != b"{":
        raise TypeError(f"event {event_name(cls)} does not encode to a JSON object")
    head = _head(cls)
    rc = _result_class(ev)
    if rc is not None:
        head += b',"' + RESULT_CLASS_FIELD.encode() + b'":' + to_json(rc)
    return head + b"}" if body == b"{}" else head + b"," + body[1:]


def _errors(exc: ValidationError) -> str:
    """pydantic's validation errors on one line, each with its field's path (``$.count``)."""
    return "; ".join(
        f"{e['msg']} - at `$.{'.'.join(str(p) for p in e['loc'])}`" if e["loc"] else e["msg"]
        for e in exc.errors(include_url=False)
    )


def _mismatch(ev: Event) -> str:
    """What is wrong with an event the serializer found a mismatch in: pydantic's errors for its
    payload validated back, each with its field's path (``$.count``)."""
    cls = type(ev)
    try:
        cls.__pydantic_validator__.validate_json(_to_json(ev, False))
    except ValidationError as exc:
        return _errors(exc)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return "a value does not match its annotation"


def encode_event(ev: Event) -> bytes:
    """Encode an event to its JSON payload: ``{"$type": name, <fields>, <undeclared fields>}``.

    Raises:
        TypeError: a field holds a value pydantic cannot encode as JSON.
    """
    try:
        return _to_json(ev, False)
    except EventValidationError as exc:  # (not raised without the check; kept for the contract)
        raise TypeError(str(exc)) from exc


def encode_checked(ev: Event) -> bytes:
    """``encode_event(ev)``, checked against ``ev``'s type where it may not match: pydantic
    validated the event when it was built, but not a field assigned since (events are mutable, and
    pydantic does not validate assignments) nor an event made with ``model_construct``. For those,
    pydantic-core's serializer checks every value as it encodes (``warnings="error"``), so the
    step that made the event fails instead of the step that would decode it. Values changed inside
    a field's container (``ev.items.append(x)``) are not seen.

    Raises:
        EventValidationError: a field does not match its annotation; the message names the event
            type and the field.
        TypeError: a field holds a value pydantic cannot encode as JSON.
    """
    return _to_json(ev, _UNVALIDATED.get(id(ev)) is ev)


def _restore_result(ev: Event, path: Any) -> None:
    target = resolve_class(path) if isinstance(path, str) else None
    result = getattr(ev, "result", None)
    if target is None or not issubclass(target, BaseModel) or not isinstance(result, dict):
        return  # (the class is not available here: the result stays its fields)
    try:
        ev.__dict__["result"] = target.model_validate(result)  # (validated: not an assignment to check)
    except (ValidationError, ValueError, TypeError):
        rebuilt = _rebuild(result)  # (an abstract model field inside: see _decode_components)
        if isinstance(rebuilt, target):
            ev.__dict__["result"] = rebuilt
        # (else a model whose dump does not validate back: the result stays its fields)


# Fields-sets shared by decoded events (see _finish): a few per class, kept for the process's life.
_SHARED_SETS: dict[type, list[set[str]]] = {}
_SHARED_SET_IDS: set[int] = set()


def _share_fields_set(ev: Event) -> None:
    """Let a decoded event hold a fields-set shared with the other events of its class decoded
    with the same fields, instead of its own: one object fewer per event for the cyclic GC to
    track while a worker keeps the event (the runs in its cache hold their events). Events copy
    it before their first assignment (``DictLikeModel.__setattr__``)."""
    own = ev.__pydantic_fields_set__
    shared = _SHARED_SETS.setdefault(type(ev), [])
    for candidate in shared:
        if candidate == own:
            object.__setattr__(ev, "__pydantic_fields_set__", candidate)
            return
    if len(shared) < 8:
        shared.append(own)
        _SHARED_SET_IDS.add(id(own))


def _finish(ev: Event) -> Event:
    _share_fields_set(ev)
    extra = ev.__pydantic_extra__
    if extra:
        extra.pop(TAG_FIELD, None)
        if RESULT_CLASS_FIELD in extra:
            _restore_result(ev, extra.pop(RESULT_CLASS_FIELD))
    return ev


def decode_event(cls: type[Event], data: bytes) -> Event:
    """Decode a JSON payload to an instance of ``cls`` with pydantic's validator (its validators
    run). Fields ``cls`` does not declare become undeclared fields; ``"$type"`` is dropped.

    Raises:
        EventDecodeError: the payload is not JSON or does not validate as ``cls``.
    """
    try:
        ev = cls.__pydantic_validator__.validate_json(data)
    except (ValidationError, ValueError, TypeError) as exc:
        ev = _decode_components(cls, data, exc)
        if ev is None:
            detail = _errors(exc) if isinstance(exc, ValidationError) else str(exc)
            raise EventDecodeError(f"payload is not a valid {cls.__name__}: {detail}") from exc
    return _finish(ev)


_COMPONENTS: dict[str, type[BaseModel]] = {}


def _named_components() -> dict[str, type[BaseModel]]:
    """Concrete pydantic models of this process that name themselves with a ``class_name()``
    classmethod, as llama-index's components do (and write in their dumps), by that name."""
    found: dict[str, type[BaseModel]] = {}
    stack: list[type[BaseModel]] = [BaseModel]
    seen: set[type] = set()
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub in seen:
                continue
            seen.add(sub)
            stack.append(sub)
            if "class_name" in vars(sub) and not inspect.isabstract(sub):
                try:
                    name = sub.class_name()  # type: ignore[attr-defined]  # checked just above
                except Exception:  # noqa: BLE001  # not the classmethod this convention means
                    continue
                if isinstance(name, str):
                    found[name] = sub
    return found


def _rebuild(value: Any) -> Any:
    """``value`` (parsed JSON) with every object naming a known component class (``"class_name"``)
    built as that class, innermost first."""
    if isinstance(value, list):
        return [_rebuild(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _rebuild(v) for k, v in value.items()}
    name = out.get("class_name")
    if isinstance(name, str):
        target = _COMPONENTS.get(name)
        if target is None:
            _COMPONENTS.update(_named_components())
            target = _COMPONENTS.get(name)
        if target is not None:
            try:
                return target.model_validate({k: v for k, v in out.items() if k != "class_name"})
            except (ValidationError, ValueError, TypeError):
                return out
    return out


def _decode_components(cls: type[Event], data: bytes, first: Exception) -> Event | None:
    """The slow path of ``decode_event`` when validation failed: a field declared with an abstract
    model type (llama-index's ``NodeWithScore.node: BaseNode``) cannot be validated from JSON, but
    a component's dump names its concrete class (``"class_name": "TextNode"``): build those
    first, then validate the event around them. ``None`` if that does not help."""
    try:
        raw = from_json(data)
    except ValueError:
        return None
    rebuilt = _rebuild(raw)
    if rebuilt == raw:
        return None
    try:
        return cls.__pydantic_validator__.validate_python(rebuilt)
    except (ValidationError, ValueError, TypeError):
        return None


def event_fields(ev: Event) -> dict[str, Any]:
    """The event's fields as JSON-ready builtins: declared fields, undeclared ones, and for a stop
    event whose ``result`` is a pydantic model, ``"$result_class"``.

    Raises:
        TypeError: a field holds a value pydantic cannot encode as JSON.
    """
    try:
        data: dict[str, Any] = type(ev).__pydantic_serializer__.to_python(ev, mode="json")
    except PydanticSerializationError as exc:
        raise TypeError(f"event {event_name(type(ev))} does not encode: {exc}") from exc
    rc = _result_class(ev)
    if rc is not None:
        data[RESULT_CLASS_FIELD] = rc
    return data


def event_from_fields(cls: type[Event], fields: dict[str, Any]) -> Event:
    """Build an event of ``cls`` from plain fields, validated as its payload would be decoded
    (``"$type"`` dropped, ``"$result_class"`` honoured).

    Raises:
        EventDecodeError: the fields do not validate as ``cls`` (or do not encode as JSON).
    """
    try:
        payload = to_json(fields)
    except PydanticSerializationError as exc:
        raise EventDecodeError(f"fields are not a valid {cls.__name__}: {exc}") from exc
    try:
        return decode_event(cls, payload)
    except EventDecodeError as exc:
        raise EventDecodeError(str(exc).replace("payload is not", "fields are not", 1)) from exc.__cause__


def registry(types: Iterable[type[Event]]) -> dict[str, type[Event]]:
    """Map event names to classes."""
    return {event_name(t): t for t in types}
