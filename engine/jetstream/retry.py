"""Riding through a JetStream leader election: which errors are transient, and how to retry them.

On a cluster, SIGKILL of the node that leads a stream (or a consumer, or the JetStream meta
group) leaves it without a leader until the survivors elect one (nats-server's Raft: a few
seconds, up to ≈ 10 s). Meanwhile requests fail in several ways, all of which pass: no responders
(nobody serves the stream's subjects or API), timeouts (a request sent to the node that died),
JetStream 503 ("JetStream system temporarily unavailable"), "stream is offline", "consumer is
offline", "JetStream cluster can not handle request", and a client that is reconnecting to
another node. ``is_transient`` is the one classifier of those; ``retrying`` is the one retry
policy (tenacity: exponential backoff with jitter, bounded in time), used by every request path
of ``JetStreamLog``, the KV buckets, the registry's heartbeat and set-up at start-up.

What still fails after the budget is raised as ``LogUnavailableError``, so callers (the control
plane answers 503 with ``Retry-After``; a worker redelivers the step) see one kind of error for
"NATS cannot serve this now", not the zoo of nats-py's.

Retrying is safe for every request it wraps: appends carry ``Nats-Msg-Id`` (a repeat is reported
as a duplicate, ``engine.wire.commit``), reads and consumer/stream set-up are idempotent, a KV put of
a heartbeat overwrites itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from nats.errors import (
    ConnectionClosedError,
    ConnectionDrainingError,
    ConnectionReconnectingError,
    MaxPayloadError,
    NoRespondersError,
    NoServersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from engine.model.durations import seconds
from engine.model.errors import CommitTooLargeError, LogError

__all__ = [
    "DEFAULT_RETRY_FOR",
    "TRANSIENT_ERR_CODES",
    "LogUnavailableError",
    "is_too_large",
    "is_transient",
    "retrying",
    "unavailable_reason",
]

logger = logging.getLogger("jetloom.log")

T = TypeVar("T")

#: How long a request is retried before ``LogUnavailableError`` (a leader election on nats-server
#: 2.15 takes 2–10 s after SIGKILL of the leader; twice that covers a slow machine).
DEFAULT_RETRY_FOR = timedelta(seconds=20)

#: JetStream API error codes (``err_code``, nats-server ``errors.json``) that mean "no leader
#: right now": 10008 JetStream system temporarily unavailable, 10009 cluster can not handle
#: request (not the leader), 10007 not assigned to this server (yet), 10118 stream is offline,
#: 10119 consumer is offline, 10163 expected last sequence per subject temporarily unavailable
#: (a new stream leader still loading its state). 10005 "no suitable peers for placement" is
#: transient only when its reason is "peer offline" (a node that just started or restarted and that
#: the meta leader has not heard from yet; seen right after a fresh cluster reported healthy), which
#: ``_TRANSIENT_TEXT`` matches; for "insufficient resources" or unmatched tags it is not.
TRANSIENT_ERR_CODES = frozenset({10007, 10008, 10009, 10118, 10119, 10163})

# 503s that do not pass by waiting: insufficient resources (too few servers for the replicas),
# JetStream not enabled (for the account), not supported in clustered mode, account not found.
_PERMANENT_503 = frozenset({10023, 10035, 10036, 10039, 10076})

_TRANSIENT_TEXT = (
    "no responders",
    "stream is offline",
    "consumer is offline",
    "leader not known",
    "temporarily unavailable",
    "can not handle request",
    "no publish ack within",
    "peer offline",
)


class LogUnavailableError(LogError):
    """NATS could not serve a request of the log within the retry budget: no server reachable,
    or a stream, consumer or the JetStream meta group without a leader (an election after a node
    was lost). The request may well succeed later; HTTP answers it with 503 and ``Retry-After``.

    Attributes:
        retry_after_s: seconds after which trying again is reasonable (an election's length).
    """

    retry_after_s: float = 2.0


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of a NATS request that passes once the cluster has a leader
    again (or the client has reconnected): no responders, a timeout, a JetStream 503 other than
    the permanent ones, "stream/consumer is offline", "cluster can not handle request", a
    connection that is reconnecting. A closed connection is not (it never comes back by itself),
    nor is a rejected append (wrong last sequence, too large), a missing stream or a bad request.
    """
    if isinstance(exc, LogUnavailableError):
        return True
    if isinstance(
        exc,
        (NoRespondersError, NoStreamResponseError, NatsTimeoutError, ConnectionReconnectingError, StaleConnectionError),
    ):
        return True
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, APIError):
        # (getattr: some of nats-py's subclasses, e.g. KeyNotFoundError, skip APIError.__init__)
        err_code, code = getattr(exc, "err_code", None), getattr(exc, "code", None)
        if err_code in TRANSIENT_ERR_CODES:
            return True
        if (code == 503 or isinstance(exc, ServiceUnavailableError)) and err_code not in _PERMANENT_503:
            return True  # (nats-py raises a bare ServiceUnavailableError for no responders)
        return _transient_text(getattr(exc, "description", None))
    if isinstance(exc, LogError):
        code = getattr(exc, "code", None)
        if code in TRANSIENT_ERR_CODES:
            return True
        return _transient_text(str(exc))
    return False


# A closed, reconnecting or silent connection, or nobody listening on a JetStream API subject.
_UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    NoRespondersError,
    ConnectionClosedError,
    ConnectionReconnectingError,
    ConnectionDrainingError,
    StaleConnectionError,
    OutboundBufferLimitError,
    NoServersError,
    ServiceUnavailableError,
    TimeoutError,  # nats.errors.TimeoutError and the log's own read timeouts (asyncio)
)
# What JetStream (and the log, which passes its descriptions on) says while a stream has no leader.
_UNAVAILABLE_WORDS = (
    "no responders",
    "offline",
    "no suitable peers",
    "leader",
    "temporarily unavailable",
    "insufficient resources",
    "status 503",
    "cluster not available",
    "jetstream not enabled",
)


def unavailable_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means NATS (or the run stream) cannot serve right now, in one line, or ``None``
    if it does not (what an HTTP API answers with 503 and ``Retry-After``).

    Covers ``LogUnavailableError`` (what the bounded retries through an election give up with),
    what ``is_transient`` calls transient, nats-py's connection errors (closed, draining:
    its owner rebuilds the connection meanwhile), JetStream API errors with code 503 or a
    description of a stream without a leader, and the log's errors carrying those descriptions.
    """
    if isinstance(exc, LogUnavailableError):
        return f"JetStream is unavailable: {exc}"
    if is_transient(exc) or isinstance(exc, _UNAVAILABLE_TYPES):
        return f"NATS is unavailable: {type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, APIError):
        text = (exc.description or "").lower()
        if exc.code == 503 or any(w in text for w in _UNAVAILABLE_WORDS):
            return f"JetStream is unavailable: {exc.description or exc.code}"
        return None
    if isinstance(exc, LogError):
        text = str(exc).lower()
        if any(w in text for w in _UNAVAILABLE_WORDS):
            return f"JetStream is unavailable: {exc}"
    return None


def is_too_large(exc: BaseException) -> bool:
    """Whether ``exc`` is a message larger than the NATS server takes (its ``max_payload``):
    nats-py's ``MaxPayloadError`` or the log's ``CommitTooLargeError``."""
    return isinstance(exc, MaxPayloadError | CommitTooLargeError)


def _transient_text(text: str | None) -> bool:
    text = (text or "").lower()
    return any(t in text for t in _TRANSIENT_TEXT)


async def retrying(
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    retry_for: timedelta | float = DEFAULT_RETRY_FOR,
    initial_s: float = 0.05,
    max_wait_s: float = 2.0,
) -> T:
    """``await call()``, again after each transient failure (``is_transient``), with exponential
    backoff and jitter (``initial_s`` doubling up to ``max_wait_s``), for at most ``retry_for``.

    Logs one WARNING line at the first retry of a call and one when it gets through after
    retrying (never a line per attempt).

    Args:
        what: what the call does, for the log lines (e.g. ``"append to JETLOOM"``).
        call: makes the request afresh each time (not an awaitable made once).
        retry_for: how long to keep retrying (``timedelta`` or seconds; default 20 s). 0: once.

    Returns:
        What ``call`` returned.

    Raises:
        LogUnavailableError: still transient when the budget ran out (the last error chained).
        Exception: a non-transient error of ``call``, at once and as it is.
    """
    budget = seconds(retry_for)
    try:  # (the first attempt outside tenacity: the hot path pays one try block, no more)
        return await call()
    except Exception as exc:
        if not is_transient(exc):
            raise
        if budget <= 0:
            if isinstance(exc, LogUnavailableError):
                raise
            raise LogUnavailableError(f"{what}: {_describe(exc)}") from exc
        logger.warning("%s: %s; retrying for up to %gs", what, _describe(exc), budget)
    attempts = 1

    def count(state: RetryCallState) -> None:
        nonlocal attempts
        attempts += 1

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_delay(budget),
            wait=wait_exponential(multiplier=initial_s, max=max_wait_s) + wait_random(0, initial_s),
            before=count,
            reraise=True,
        ):
            with attempt:
                result = await call()
    except Exception as exc:
        if is_transient(exc) and not isinstance(exc, LogUnavailableError):
            raise LogUnavailableError(f"{what}: {_describe(exc)} (gave up after {budget:g}s)") from exc
        raise
    logger.warning("%s: succeeded at attempt %d", what, attempts)
    return result


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "failed"
    if isinstance(exc, APIError):
        code, text = getattr(exc, "code", None) or "", getattr(exc, "description", None) or type(exc).__name__
        return f"JetStream {code} {text}".replace("  ", " ")
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
