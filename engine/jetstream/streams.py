"""Set-up of jetloom's streams that respects what an operator configured.

A process starting up creates the streams (and KV buckets, whose backing stream is
``KV_<bucket>``) it needs with the replicas it was given. A stream that exists is not rewritten:
set-up adds only what jetloom cannot work without, and leaves every other setting as it is:

- its subjects, when the stream does not have them;
- the ``allow_*`` flags jetloom uses, when they are off (nats-server lets an update turn on
  ``allow_direct``, ``allow_atomic``, ``allow_msg_schedules`` and ``allow_msg_ttl``; the last two
  can never be turned off again).

Replicas are never changed on an existing stream, neither lowered (a worker started with the
default ``--replicas 1`` must not turn an operator's R3 stream into R1) nor raised: JetStream can
scale a stream up, but that copies the whole stream to new peers, a decision for whoever runs the
cluster (``nats stream edit --replicas``), not for the next process that happens to start. Each
difference left alone is logged in one line (replicas, storage, duplicate window).

The stream's configuration is read and written as the server's own JSON (``$JS.API.STREAM.INFO``
and ``.UPDATE``), so fields nats-py does not know (settings of newer servers) survive an update.
Every request rides through a leader election (``retry.retrying``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import APIError

from engine.jetstream.retry import DEFAULT_RETRY_FOR, retrying

__all__ = [
    "ERR_STREAM_NAME_IN_USE",
    "ERR_STREAM_NOT_FOUND",
    "RUN_STREAM_FLAGS",
    "ensure_log_streams",
    "ensure_stream",
    "reconcile_stream",
    "stream_info",
]

logger = logging.getLogger("jetloom.log")

ERR_STREAM_NOT_FOUND = 10059
# What the run stream needs on: direct gets (reads), atomic batches (commit="batch"), message
# schedules (durable timers, retries), per-message TTL.
RUN_STREAM_FLAGS = ("allow_direct", "allow_atomic", "allow_msg_schedules", "allow_msg_ttl")
_NS = 1_000_000_000
ERR_STREAM_NAME_IN_USE = 10058  # created meanwhile by another process with another config
_NS = 1_000_000_000
# Longest wait for one answer of the JetStream API during set-up: a request that reached a node
# just before it died is never answered, and the next attempt (elsewhere) should not wait long.
_ATTEMPT_S = 4.0


async def _api(nc: NATS, subject: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    """One JetStream API request; its JSON reply, or ``APIError`` (typed by nats-py) for an error."""
    reply = await nc.request(
        subject, orjson.dumps(body) if body is not None else b"", timeout=min(timeout, _ATTEMPT_S)
    )
    data: dict[str, Any] = orjson.loads(reply.data) if reply.data else {}
    err = data.get("error")
    if err is not None:
        APIError.from_error(err)  # raises the matching nats-py error
    return data


async def stream_info(
    nc: NATS, name: str, *, timeout: float = 10.0, retry_for: timedelta | float = DEFAULT_RETRY_FOR
) -> dict[str, Any] | None:
    """The stream's info as the server's JSON (``config``, ``state``, ``cluster``), or ``None``
    when there is no such stream. Rides through a leader election.

    Raises:
        retry.LogUnavailableError: no answer within ``retry_for``.
    """
    try:
        return await retrying(
            f"stream info of {name}", lambda: _api(nc, f"$JS.API.STREAM.INFO.{name}", None, timeout), retry_for=retry_for
        )
    except APIError as exc:
        if exc.err_code == ERR_STREAM_NOT_FOUND:
            return None
        raise


async def ensure_stream(
    nc: NATS,
    config: dict[str, Any],
    *,
    flags: Sequence[str] = (),
    timeout: float = 10.0,
    retry_for: timedelta | float = DEFAULT_RETRY_FOR,
) -> None:
    """Create the stream ``config`` (the server's JSON form: ``name``, ``subjects``, ``storage``,
    ``num_replicas``, ...) when it is missing; else ``reconcile_stream`` it.

    Args:
        config: the whole configuration of a new stream.
        flags: the ``allow_*`` flags jetloom needs on, also on an existing stream.

    Raises:
        retry.LogUnavailableError: no leader within ``retry_for``.
        nats.js.errors.APIError: the server refused the creation or the update (e.g. subjects that
            overlap another stream's).
    """
    name = config["name"]
    info = await stream_info(nc, name, timeout=timeout, retry_for=retry_for)
    if info is None:
        try:
            await retrying(
                f"create stream {name}",
                lambda: _api(nc, f"$JS.API.STREAM.CREATE.{name}", config, timeout),
                retry_for=retry_for,
            )
            return
        except APIError as exc:
            if exc.err_code != ERR_STREAM_NAME_IN_USE:
                raise
        info = await stream_info(nc, name, timeout=timeout, retry_for=retry_for)  # made meanwhile
        if info is None:
            raise LookupError(f"stream {name} was reported existing and then missing")
    await reconcile_stream(
        nc,
        info["config"],
        subjects=config.get("subjects") or (),
        flags=flags,
        replicas=config.get("num_replicas", 1),
        storage=config.get("storage"),
        duplicate_window_ns=config.get("duplicate_window"),
        timeout=timeout,
        retry_for=retry_for,
    )


async def reconcile_stream(
    nc: NATS,
    current: dict[str, Any],
    *,
    subjects: Sequence[str] = (),
    flags: Sequence[str] = (),
    replicas: int = 1,
    storage: str | None = None,
    duplicate_window_ns: int | None = None,
    timeout: float = 10.0,
    retry_for: timedelta | float = DEFAULT_RETRY_FOR,
) -> bool:
    """Bring an existing stream's configuration ``current`` (the server's JSON) up to what
    jetloom needs, and no further: ``subjects`` it lacks are added and ``flags`` that are off
    turned on; ``replicas``, ``storage`` and ``duplicate_window_ns`` (what jetloom would have
    created it with) are compared and each difference logged in one line, not applied.

    Returns:
        Whether the stream was updated.

    Raises:
        retry.LogUnavailableError / nats.js.errors.APIError: as for ``ensure_stream``.
    """
    name = current["name"]
    wanted = dict(current)
    have = list(current.get("subjects") or [])
    missing = [s for s in subjects if not any(_covers(h, s) for h in have)]
    if missing:
        wanted["subjects"] = have + missing
    off = [f for f in flags if not current.get(f)]
    for f in off:
        wanted[f] = True
    has = int(current.get("num_replicas") or 1)
    if has < replicas:
        logger.warning(
            "stream %s has %d replica(s), --replicas asks for %d: left as is; raise it with "
            "`nats stream edit %s --replicas %d`",
            name, has, replicas, name, replicas,
        )
    elif has > replicas:
        logger.info("stream %s has %d replica(s), more than the %d asked for: left as is", name, has, replicas)
    if storage is not None and current.get("storage") != storage:
        logger.info("stream %s uses %s storage, jetloom would create it with %s: left as is", name, current.get("storage"), storage)
    window = current.get("duplicate_window")
    if duplicate_window_ns is not None and window is not None and window != duplicate_window_ns:
        logger.info(
            "stream %s keeps idempotency keys for %gs, jetloom would set %gs: left as is",
            name, window / _NS, duplicate_window_ns / _NS,
        )
    if not missing and not off:
        return False
    logger.info(
        "stream %s: %s", name,
        "; ".join(
            ([f"adding subjects {', '.join(missing)}"] if missing else [])
            + ([f"turning on {', '.join(off)}"] if off else [])
        ),
    )
    await retrying(
        f"update stream {name}",
        lambda: _api(nc, f"$JS.API.STREAM.UPDATE.{name}", wanted, timeout),
        retry_for=retry_for,
    )
    return True


def _covers(pattern: str, subject: str) -> bool:
    """Whether every subject matching ``subject`` (may have wildcards) matches ``pattern``."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return i < len(s)
        if i >= len(s):
            return False
        if token == "*":
            if s[i] == ">":
                return False
            continue
        if token != s[i]:
            return False
    return len(p) == len(s)


async def ensure_log_streams(
    nc: NATS,
    *,
    prefix: str,
    stream: str,
    dlq_stream: str,
    storage: str,
    replicas: int,
    duplicate_window: float,
    timeout: float,
    retry_for: float,
) -> None:
    """Create a log's run stream (``<prefix>.run.>``) and dead-letter stream (``<prefix>.dlq.>``)
    when missing, or bring existing ones up to what the log needs (``ensure_stream``).

    Args:
        nc: the connection.
        prefix: the subject prefix.
        stream: the run stream's name.
        dlq_stream: the dead-letter stream's name.
        storage: ``"file"`` or ``"memory"``.
        replicas: replicas of a stream created here.
        duplicate_window: seconds the run stream remembers ``Nats-Msg-Id`` values.
        timeout: seconds to wait for each API request.
        retry_for: seconds a transient failure is retried.

    Raises:
        retry.LogUnavailableError: no leader for the streams within ``retry_for``.
        nats.js.errors.APIError: the server refused (e.g. subjects overlapping another stream).
    """
    await ensure_stream(
        nc,
        {
            "name": stream,
            "subjects": [f"{prefix}.run.>"],
            "storage": storage,
            "num_replicas": replicas,
            "duplicate_window": int(duplicate_window * _NS),
            **dict.fromkeys(RUN_STREAM_FLAGS, True),
        },
        flags=RUN_STREAM_FLAGS,
        timeout=timeout,
        retry_for=retry_for,
    )
    await ensure_stream(
        nc,
        {
            "name": dlq_stream,
            "subjects": [f"{prefix}.dlq.>"],
            "storage": storage,
            "num_replicas": replicas,
            "allow_direct": True,
        },
        flags=("allow_direct",),
        timeout=timeout,
        retry_for=retry_for,
    )
