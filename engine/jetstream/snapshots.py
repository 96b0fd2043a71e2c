"""``KvSnapshots``: run snapshots in the JetStream KV bucket ``<prefix>_snapshots``.

One key per run, ``<workflow>.<run_id>``, history 1. A put reads the current entry and writes
with its revision as the expected last one (``KeyValue.update``), so of two processes writing the
same run's snapshot the one covering more records wins and a slower writer never moves a snapshot
backwards. ``nats kv ls jetloom_snapshots`` lists them.
"""

from __future__ import annotations

import contextlib
import logging

from nats.aio.client import Client as NATS
from nats.js.errors import (
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from engine.jetstream.kv import open_bucket
from engine.jetstream.retry import retrying
from engine.state.snapshots import snapshot_seq

__all__ = ["KvSnapshots"]

logger = logging.getLogger("jetloom.snapshots")


class KvSnapshots:
    """``SnapshotStore`` on a KV bucket. Create with ``await KvSnapshots.open(nc)``.

    Args:
        kv: the bucket.
    """

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(
        cls,
        nc: NATS,
        *,
        prefix: str = "jetloom",
        storage: str = "file",
        max_value_bytes: int = -1,
        replicas: int = 1,
    ) -> KvSnapshots:
        """The bucket ``<prefix>_snapshots``, created if missing.

        Args:
            nc: a connected nats-py client.
            prefix: bucket name prefix (default ``jetloom``).
            storage: ``"file"`` (default) or ``"memory"``.
            max_value_bytes: largest snapshot stored (default -1: the server's ``max_payload``).
            replicas: replicas of a new bucket (default 1).
        """
        kv = await open_bucket(
            nc,
            f"{prefix}_snapshots",
            storage=storage,
            replicas=replicas,
            max_value_size=max_value_bytes,
        )
        return cls(kv)

    async def get(self, workflow: str, run_id: str) -> bytes | None:
        key = f"{workflow}.{run_id}"
        with contextlib.suppress(KeyNotFoundError):
            # (through a leader election of the bucket: retry.retrying)
            entry = await retrying(f"snapshot get of {key}", lambda: self.kv.get(key))
            return entry.value or None
        return None

    async def put(self, workflow: str, run_id: str, data: bytes) -> bool:
        # Retried whole through a leader election: a create or update whose ack was lost is
        # refused the second time as a wrong last sequence, which reads as "someone stored it".
        return await retrying(f"snapshot put of {workflow}.{run_id}", lambda: self._put(workflow, run_id, data))

    async def _put(self, workflow: str, run_id: str, data: bytes) -> bool:
        key = f"{workflow}.{run_id}"
        mine = snapshot_seq(data) or 0
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            entry = None
        try:
            if entry is None or not entry.value:
                # create() also succeeds over a deleted key
                await self.kv.create(key, data)
            else:
                if (snapshot_seq(entry.value) or 0) >= mine:
                    return False
                await self.kv.update(key, data, last=entry.revision)
        except KeyWrongLastSequenceError:
            return False  # another writer got there first; it covers as much or will be retried
        return True

    async def delete(self, workflow: str, run_id: str) -> None:
        with contextlib.suppress(KeyNotFoundError):
            await self.kv.purge(f"{workflow}.{run_id}")
