"""Opening the JetStream KV buckets jetloom keeps beside its log (registry, sessions, snapshots)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from engine.jetstream.retry import DEFAULT_RETRY_FOR, retrying
from engine.jetstream.streams import reconcile_stream, stream_info

__all__ = ["current_values", "open_bucket"]


async def open_bucket(
    nc: NATS,
    name: str,
    *,
    storage: str = "file",
    replicas: int = 1,
    retry_for: timedelta | float = DEFAULT_RETRY_FOR,
    **config: Any,
) -> KeyValue:
    """The KV bucket ``name``, created if missing with history 1, direct gets, ``replicas`` and
    ``config`` (further ``KeyValueConfig`` fields, e.g. ``limit_marker_ttl``, ``max_value_size``).

    An existing bucket is used as its operator made it: its backing stream ``KV_<name>`` only gets
    the flags jetloom needs turned on (direct gets; per-message TTL when ``limit_marker_ttl`` is
    asked for), and a difference in replicas is logged in one line, not applied
    (``streams.reconcile_stream``). Every request rides through a leader election.

    Args:
        storage: ``"file"`` (default) or ``"memory"``, for a new bucket.
        replicas: replicas of a new bucket (default 1).
        retry_for: how long transient failures are retried (default 20 s).

    Raises:
        retry.LogUnavailableError: no leader for the bucket (or the meta group) within
            ``retry_for``.
    """
    js = nc.jetstream()
    info = await stream_info(nc, f"KV_{name}", retry_for=retry_for)
    kind = StorageType.FILE if storage == "file" else StorageType.MEMORY
    if info is None:
        await retrying(
            f"create KV bucket {name}",
            lambda: js.create_key_value(
                KeyValueConfig(
                    bucket=name, history=1, storage=kind, direct=True, replicas=replicas, **config
                )
            ),
            retry_for=retry_for,
        )
    else:
        flags = ["allow_direct"]
        if config.get("limit_marker_ttl"):
            flags.append("allow_msg_ttl")
        await reconcile_stream(
            nc, info["config"], flags=flags, replicas=replicas, retry_for=retry_for
        )
    try:
        return await retrying(f"open KV bucket {name}", lambda: js.key_value(name), retry_for=retry_for)
    except (BucketNotFoundError, NotFoundError):  # deleted in between: make it again
        return await open_bucket(nc, name, storage=storage, replicas=replicas, retry_for=retry_for, **config)


async def current_values(kv: KeyValue) -> list[bytes]:
    """The live values of a bucket, read with one watcher (deleted and expired keys skipped).

    Raises:
        nats.errors.TimeoutError: the bucket sent nothing for 5 s (an election).
    """
    watcher = await kv.watchall(ignore_deletes=True)
    out: list[bytes] = []
    try:
        while True:
            entry = await watcher.updates(timeout=5.0)
            if entry is None:
                return out
            if entry.value:
                out.append(entry.value)
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()
