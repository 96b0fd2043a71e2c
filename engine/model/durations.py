"""Durations as the engine's APIs take them (seconds or ``timedelta``), and wait deadlines."""

from __future__ import annotations

import time
from datetime import timedelta

__all__ = ["deadline_ns", "seconds"]


def seconds(value: float | timedelta) -> float:
    """``value`` in seconds (a float, or a ``timedelta``)."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def deadline_ns(delay: float | timedelta | None, earlier: int | None = None) -> int:
    """When a wait ends, ns since the epoch: ``earlier`` (the deadline a previous execution of the
    step recorded, which a replay keeps), else now + ``delay``; 0 when there is no delay (never)."""
    if earlier is not None:
        return earlier
    if delay is None:
        return 0
    return time.time_ns() + int(seconds(delay) * 1e9)
