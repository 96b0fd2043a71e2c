"""In-memory implementations of the ports (tests, single-process use)."""

from engine.memory.log import (
    MemoryLog,
)

__all__ = [
    "MemoryLog",
]
