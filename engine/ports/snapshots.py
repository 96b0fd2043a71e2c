"""The ``SnapshotStore`` port: where snapshots of a run's fold are kept, one per run.

A snapshot is the bytes ``engine.state.snapshots.encode_snapshot`` makes; a store compares two of
them only by the sequence they cover (``engine.state.snapshots.snapshot_seq``). Implementations:
``engine.memory.snapshots.MemorySnapshots`` (a dict) and ``engine.jetstream.snapshots.KvSnapshots``
(the KV bucket ``<prefix>_snapshots``).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["SnapshotStore"]


class SnapshotStore(Protocol):
    """Where snapshots are kept, one per run (key: workflow and run id)."""

    async def get(self, workflow: str, run_id: str) -> bytes | None:
        """The run's snapshot, or ``None``."""
        ...

    async def put(self, workflow: str, run_id: str, data: bytes) -> bool:
        """Keep ``data`` unless the stored snapshot covers as many records or more (compared by
        ``snapshot_seq``). Returns whether it was stored. Never raises for a lost race."""
        ...

    async def delete(self, workflow: str, run_id: str) -> None:
        """Forget the run's snapshot (a no-op when there is none)."""
        ...
