"""The event names of llama-index-workflows' ``workflows.events``, for programs that import them
from there: ``from workflows.events import X`` becomes ``from engine.events import X``.

Each name is jetloom's own (events are defined in ``engine.model.events``, ``StepFailedEvent`` in
``engine.model.retry``); names those modules do not define (yet) are looked up on first use and
raise ``AttributeError`` if they still lack them.
"""

# ruff: noqa: F822  (names in __all__ that the module-level __getattr__ below provides, PEP 562)
from __future__ import annotations

import importlib
from typing import Any

from engine.model.events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from engine.model.retry import StepFailedEvent

__all__ = [
    "CollectionReleaseEvent",
    "DictLikeModel",
    "Event",
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
    "StepFailedEvent",
    "StepState",
    "StepStateChanged",
    "StopEvent",
    "UnhandledEvent",
    "UnreconstructedException",
    "WorkflowCancelledEvent",
    "WorkflowFailedEvent",
    "WorkflowIdleEvent",
    "WorkflowTimedOutEvent",
]

_LATER = dict.fromkeys(
    (
        "CollectionReleaseEvent",
        "DictLikeModel",
        "EventType",
        "IdleReleasedEvent",
        "InternalDispatchEvent",
        "SerializableEvent",
        "SerializableEventType",
        "SerializableException",
        "SerializableOptionalEvent",
        "SerializableOptionalException",
        "StepState",
        "StepStateChanged",
        "UnhandledEvent",
        "UnreconstructedException",
        "WorkflowCancelledEvent",
        "WorkflowFailedEvent",
        "WorkflowIdleEvent",
        "WorkflowTimedOutEvent",
    ),
    "engine.model.events",
)


def __getattr__(name: str) -> Any:
    module = _LATER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} ({module} does not define it)") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


