"""In-memory implementations of the ports (tests, single-process use)."""

from engine.memory.backend import (
    MemoryBackend,
    MemoryBackendClosed,
)
from engine.memory.log import (
    MemoryLog,
)
from engine.memory.registry import (
    MemoryRegistry,
)
from engine.memory.sessions import (
    MemorySessionStore,
)
from engine.memory.snapshots import (
    MemorySnapshots,
)

__all__ = [
    "MemoryBackend",
    "MemoryBackendClosed",
    "MemoryLog",
    "MemoryRegistry",
    "MemorySessionStore",
    "MemorySnapshots",
]
