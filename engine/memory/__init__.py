"""In-memory implementations of the ports (tests, single-process use)."""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
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
else:  # (imported on first use: engine._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "engine.memory.backend": ("MemoryBackend", "MemoryBackendClosed"),
            "engine.memory.log": ("MemoryLog",),
            "engine.memory.registry": ("MemoryRegistry",),
            "engine.memory.sessions": ("MemorySessionStore",),
            "engine.memory.snapshots": ("MemorySnapshots",),
        },
    )

__all__ = [
    "MemoryBackend",
    "MemoryBackendClosed",
    "MemoryLog",
    "MemoryRegistry",
    "MemorySessionStore",
    "MemorySnapshots",
]
