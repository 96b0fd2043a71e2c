"""``MemorySnapshots``: the ``SnapshotStore`` port in a dict, beside ``MemoryLog``."""

from __future__ import annotations

from engine.state.snapshots import snapshot_seq

__all__ = ["MemorySnapshots"]


class MemorySnapshots:
    """``SnapshotStore`` in a dict (in-process; tests and ``MemoryLog``).

    Attributes:
        puts: snapshots stored so far.
    """

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], bytes] = {}
        self.puts = 0

    async def get(self, workflow: str, run_id: str) -> bytes | None:
        return self._data.get((workflow, run_id))

    async def put(self, workflow: str, run_id: str, data: bytes) -> bool:
        old = self._data.get((workflow, run_id))
        if old is not None and (snapshot_seq(old) or 0) >= (snapshot_seq(data) or 0):
            return False
        self._data[(workflow, run_id)] = data
        self.puts += 1
        return True

    async def delete(self, workflow: str, run_id: str) -> None:
        self._data.pop((workflow, run_id), None)
