"""The storage ports (Protocols) the runtime depends on; ``engine.memory`` and
``engine.jetstream`` implement them."""

from engine.ports.log import (
    AppendResult,
    DeadLetter,
    Delivery,
    EventLog,
    Followers,
    event_consumers,
    hand_over,
)

__all__ = [
    "AppendResult",
    "DeadLetter",
    "Delivery",
    "EventLog",
    "Followers",
    "event_consumers",
    "hand_over",
]
