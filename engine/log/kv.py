"""Opening the JetStream KV buckets jetloom keeps beside its log (registry, sessions, snapshots)."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

__all__ = ["open_bucket"]


async def open_bucket(
    nc: NATS, name: str, *, storage: str = "file", replicas: int = 1, **config: Any
) -> KeyValue:
    """The KV bucket ``name``, created if missing with history 1, direct gets, and ``config``
    (further ``KeyValueConfig`` fields, e.g. ``limit_marker_ttl``, ``max_value_size``). An
    existing bucket is used as it is.

    Args:
        storage: ``"file"`` (default) or ``"memory"``, for a new bucket.
        replicas: replicas of a new bucket (default 1).
    """
    js = nc.jetstream()
    try:
        return await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):
        pass
    kind = StorageType.FILE if storage == "file" else StorageType.MEMORY
    return await js.create_key_value(
        KeyValueConfig(
            bucket=name, history=1, storage=kind, direct=True, replicas=replicas, **config
        )
    )
