"""``JetStreamLog``: the durable event log on NATS JetStream (nats-py).

One stream (default ``JETLOOM``) holds every run's records on ``<prefix>.run.>``; a second
(``JETLOOM_DLQ``) holds dead letters on ``<prefix>.dlq.>``. Primitives, as checked on nats-server
2.15 (docs/architecture.md):

- appends are pipelined by default (``commit="pipelined"``): the first message is published and its
  ack awaited, then the others are published without waiting for each ack, each with its own
  ``Nats-Msg-Id`` (``<key>`` for the first, ``<key>/<i>`` for the others, see
  ``engine.wire.commit``), and the acks are gathered. A repeated id is reported by the server as a
  duplicate (``duplicate: true``) and not stored. Not atomic: a crash part-way leaves a prefix.
  Cost: about one publish round trip plus a little per message, where an atomic batch costs
  several fsyncs and batches are serialized per stream.
- ``commit="batch"`` keeps atomic batches (``Nats-Batch-Id``/``-Sequence``/``-Commit``, server
  2.12+) with the key as ``Nats-Msg-Id`` on the first message; a duplicate batch is rejected with
  ``err_code`` 10201 and nothing is stored.
- a run is read with a batched direct get (``next_by_subj`` = the run's filter) of 128 records;
  when more than 128 follow, the rest comes through a push consumer made for the read and deleted
  after it (``read``: a delivery costs the server less than a direct get of the same record),
  otherwise from more direct gets of up to 1,000. Every direct get (reads, scans, dead letters)
  goes through ``read.direct_read``.
- a run is followed by reading it, then through one ordered push consumer per workflow shared by
  every follow in the process (``follow.FollowHub``; a consumer per run costs the server more to
  create and delete than the run's records).
- each step's consumer is a durable pull consumer; deliveries come from a continuous pull loop
  (pull requests refilled as deliveries settle, idle heartbeats, a watchdog that re-pulls when the
  server goes quiet), not from ``fetch(batch=1)``, which is several times slower.

On a connection that passes the gate of ``_natspy`` (the fast path, ``JetStreamLog.fast_path``),
messages skip nats-py's per-message layers: its protocol and header parsers, ``Client.publish``
and ``Msg`` objects. Otherwise everything takes nats-py's public API; the behaviour is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DeliverPolicy,
    StorageType,
)
from nats.js.errors import APIError, NotFoundError

from engine.jetstream._natspy import FAST_PATH_ENV, Tap, fast_path_from_env, tap
from engine.jetstream.acks import AckInbox
from engine.jetstream.connection import DEFAULT_URL, NatsSettings, open_connection
from engine.jetstream.follow import EVERY_RUN, FollowHub
from engine.jetstream.pub import Outbox
from engine.jetstream.read import (
    FIRST_READ,
    LONG_READ,
    WALK_DISTANCE,
    WALK_MAX,
    ConsumerRead,
    ReadInbox,
    direct_read,
    subscribe_tapped,
)
from engine.jetstream.retry import DEFAULT_RETRY_FOR, LogUnavailableError, retrying
from engine.jetstream.streams import ensure_stream
from engine.jetstream.wire import is_status, parse_ack_subject, parse_block, parse_status
from engine.model.durations import seconds
from engine.model.errors import AppendError, CommitTooLargeError, LastSeqMismatchError, LogError
from engine.model.records import (
    DEFAULT_PREFIX,
    OutMessage,
    RawRecord,
    execution_of,
    message_id,
    parse_subject,
    run_filter,
    run_subject,
)
from engine.ports.log import AppendResult, DeadLetter, Delivery, event_consumers
from engine.wire.codec import subject_parts

__all__ = [
    "DEFAULT_ACK_WAIT",
    "FAST_PATH_ENV",
    "DEFAULT_PROGRESS_HEARTBEAT",
    "JetStreamLog",
    "check_lease",
    "commands_consumer_name",
    "consumer_name",
]

logger = logging.getLogger("jetloom.log")

_T = TypeVar("_T")

DIRECT_GET_BATCH = 1000
# Idle heartbeat of a pull request: two missed ones and the pull loop asks again (a pull request
# waiting on a consumer leader that was lost is gone with it; the new leader needs a new one).
PULL_HEARTBEAT_S = 2.0
PULL_BACKOFF_S = 0.05  # first wait before pulling again after a 503 (no consumer leader)
PULL_BACKOFF_MAX_S = 2.0
MULTI_LAST_SUBJECTS = 256  # subject filters per multi_last request
ERR_BATCH_DUPLICATE = 10201  # "atomic publish batch contains duplicate message id"
ERR_BATCH_TOO_LARGE = 10199  # "atomic publish batch is too large"
ERR_WRONG_LAST_SEQ = 10071  # "wrong last sequence"
_NS = 1_000_000_000
_H_EXPECTED_SEQ = "Nats-Expected-Last-Subject-Sequence"  # the run check of _expect
_H_EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
# What the run stream needs on: direct gets (reads), atomic batches (commit="batch"), message
# schedules (durable timers, retries), per-message TTL.
_RUN_STREAM_FLAGS = ("allow_direct", "allow_atomic", "allow_msg_schedules", "allow_msg_ttl")
# A SIGKILLed worker's triggers are redelivered once ack_wait passes after its last in-progress
# ack, so these two bound crash recovery (benchmarks scenario (k) measures it), while a running
# step renews its lease 3 times per ack_wait and keeps it through two lost heartbeats.
DEFAULT_ACK_WAIT = timedelta(seconds=6)
DEFAULT_PROGRESS_HEARTBEAT = timedelta(seconds=2)


def check_lease(ack_wait_s: float, progress_heartbeat_s: float | None = None) -> float:
    """Check a step consumer's ``ack_wait`` and progress-heartbeat interval (seconds), and return
    the heartbeat: when none is given, ``DEFAULT_PROGRESS_HEARTBEAT`` or a third of ``ack_wait``
    when that is shorter.

    Raises:
        ValueError: either is not positive, or the heartbeat is not shorter than ``ack_wait``
            (a running step would lose its lease between two in-progress acks).
    """
    if progress_heartbeat_s is None:
        progress_heartbeat_s = min(DEFAULT_PROGRESS_HEARTBEAT.total_seconds(), ack_wait_s / 3)
    if ack_wait_s <= 0 or progress_heartbeat_s <= 0:
        raise ValueError(
            f"ack_wait and progress heartbeat must be > 0 s, got {ack_wait_s:g} and {progress_heartbeat_s:g}"
        )
    if progress_heartbeat_s >= ack_wait_s:
        raise ValueError(
            f"progress heartbeat ({progress_heartbeat_s:g}s) must be shorter than ack_wait ({ack_wait_s:g}s)"
        )
    return progress_heartbeat_s


def consumer_name(workflow: str, step: str, event_type: str | None = None) -> str:
    """The durable consumer name of a workflow's step's events: ``<workflow>--<step>`` for its
    first accepted event type (in sorted order; its only one for most steps), and
    ``<workflow>--<step>--evt--<event_type>`` for each other type it accepts."""
    return f"{workflow}--{step}" if event_type is None else f"{workflow}--{step}--evt--{event_type}"


def commands_consumer_name(workflow: str, step: str) -> str:
    """The durable consumer name of a workflow's step's commands (``cmd.<step>``)."""
    return f"{workflow}--{step}--cmd"


class _Delivery:
    """A pull-consumer delivery; settling it frees a slot for the next pull."""

    __slots__ = ("record", "attempt", "_reply", "_pull", "_settled", "yielded")

    def __init__(self, record: RawRecord, attempt: int, reply: str, pull: _Pull) -> None:
        self.record = record
        self.attempt = attempt
        self._reply = reply
        self._pull = pull
        self._settled = False
        self.yielded = False

    async def _settle(self, payload: bytes) -> None:
        if self._settled:
            return
        self._settled = True
        self._pull.release(self)
        if not self._pull.later(self._reply, payload):
            await self._pull.publish(self._reply, payload)

    async def ack(self) -> None:
        await self._settle(b"+ACK")

    async def term(self) -> None:
        await self._settle(b"+TERM")

    async def nak(self, delay: timedelta | None = None) -> None:
        if delay is None:
            await self._settle(b"-NAK")
        else:
            body = orjson.dumps({"delay": int(delay.total_seconds() * _NS)})
            await self._settle(b"-NAK " + body)

    async def in_progress(self) -> None:
        if not self._settled:
            await self._pull.publish(self._reply, b"+WPI")


class _Pull:
    """The continuous pull loop of one consumer in one process.

    Keeps up to ``max_in_flight + prefetch`` deliveries asked for or held; hands out at most
    ``max_in_flight`` at a time; keeps every held delivery (running or buffered) alive with
    in-progress acks every ``progress`` seconds; re-pulls when the server has been silent for two
    heartbeats (a restart or a reconnect drops pending pull requests).
    """

    def __init__(
        self,
        nc: NATS,
        api_subject: str,
        *,
        max_in_flight: int,
        prefetch: int,
        expires: float,
        heartbeat: float,
        ack_wait: float,
        progress: float | None = None,
        tap: Tap | None = None,
        outbox: Outbox | None = None,
        dispatch: Callable[[_Delivery], None] | None = None,
    ) -> None:
        self.nc = nc
        self.tap = tap
        self.dispatch = dispatch
        self.publish = outbox.publish if outbox is not None else nc.publish
        self.later = outbox.later if outbox is not None else (lambda subject, payload: False)
        self.api_subject = api_subject
        self.limit = max_in_flight + prefetch
        self.max_in_flight = max_in_flight
        self.expires_ns = int(expires * _NS)
        self.heartbeat = heartbeat
        self.ack_wait = ack_wait
        self.progress = progress if progress is not None else ack_wait / 3
        self.ready: deque[_Delivery] = deque()
        self.held: set[_Delivery] = set()  # received and not settled (buffered or running)
        self.running = 0
        self.outstanding = 0  # messages asked for and not yet received
        self.last_heard = time.monotonic()
        self.wake = asyncio.Event()
        self.hold_until = 0.0  # no pull request before this (monotonic s): backing off after a 503
        self.backoff = PULL_BACKOFF_S

    def release(self, d: _Delivery) -> None:
        if d in self.held:
            self.held.discard(d)
            if d.yielded:
                self.running -= 1
            self.wake.set()

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers
        if headers and not msg.data and "Status" in headers:
            self._status(headers["Status"], headers)
            return
        self._take(msg.subject, msg.reply, dict(headers or {}), msg.data)

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        """A message of the pull inbox as the protocol parser has it (``_natspy.Tap``)."""
        if is_status(headers):
            self._status(*parse_status(headers))  # type: ignore[arg-type]
            return
        self._take(subject.decode(), reply.decode(), parse_block(headers), data)

    def _status(self, status: str, headers: dict[str, str]) -> None:
        self.last_heard = time.monotonic()
        self._on_status(status, headers)
        self.wake.set()

    def _take(self, subject: str, reply: str, headers: dict[str, str], data: bytes) -> None:
        self.last_heard = time.monotonic()
        self.backoff = PULL_BACKOFF_S
        self.outstanding = max(0, self.outstanding - 1)
        delivery = self._delivery(subject, reply, headers, data)
        if delivery is None:
            return
        self.held.add(delivery)
        if self.dispatch is not None and not self.ready and self.running < self.max_in_flight:
            # handed on from the read loop: its handler starts in the next turn of the event
            # loop, not after the pull loop's
            try:
                self.dispatch(delivery)  # (it starts a task: nothing runs before the lines below)
            except Exception:  # not into the connection's read loop: the pull loop hands it on
                logger.exception("pull consumer %s: dispatch failed", self.api_subject)
            else:
                delivery.yielded = True
                self.running += 1
                return  # (a delivery that arrives leaves the pull window as it was: no refill)
        self.ready.append(delivery)
        self.wake.set()

    async def _pull_more(self) -> None:
        if self.hold_until and time.monotonic() < self.hold_until:
            return
        want = self.limit - len(self.held) - self.outstanding
        if want <= 0 or (self.outstanding and want < max(1, self.limit // 2)):
            return
        body = orjson.dumps(
            {"batch": want, "expires": self.expires_ns, "idle_heartbeat": int(self.heartbeat * _NS)}
        )
        self.outstanding += want
        await self.publish(self.api_subject, body, self.inbox)

    async def _keep_alive(self) -> None:
        # Buffered and running deliveries must not hit ack_wait while they wait or work; and when
        # the server has been silent for two heartbeats (a restart or a reconnect drops pending
        # pull requests), ask again. One timer for both, not one per wait of the pull loop.
        last_wip = time.monotonic()
        while True:
            await asyncio.sleep(min(self.heartbeat, self.progress))
            now = time.monotonic()
            if now - self.last_heard > 2 * self.heartbeat:
                self.outstanding = 0  # our pull requests are gone; ask again
                self.last_heard = now
                self.wake.set()
            if now - last_wip >= 0.9 * self.progress:  # (a timer may fire a hair early)
                last_wip = now
                for d in list(self.held):
                    await d.in_progress()

    async def run(self) -> AsyncIterator[_Delivery]:
        self.inbox = self.nc.new_inbox()
        # (deliveries straight from the parser when tapped: no Msg, queue or task each)
        sub = await subscribe_tapped(self.nc, self.inbox, self.tap, self._on_raw, self._on_msg)
        keep_alive = asyncio.create_task(self._keep_alive())
        try:
            while True:
                await self._pull_more()
                if self.ready and self.running < self.max_in_flight:
                    d = self.ready.popleft()
                    if d in self.held:
                        d.yielded = True
                        self.running += 1
                        if self.dispatch is not None:
                            self.dispatch(d)
                        else:
                            yield d
                    continue
                self.wake.clear()
                await self.wake.wait()
        finally:
            keep_alive.cancel()
            if self.tap is not None:
                self.tap.remove(sub)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
                # Hand buffered deliveries back at once instead of letting them wait out ack_wait.
                for d in list(self.ready):
                    await d.nak()

    def _on_status(self, status: str, headers: dict[str, str]) -> None:
        if status == "100":
            self.backoff = PULL_BACKOFF_S
            return  # idle heartbeat
        if status == "503":
            # No responders: the consumer has no leader (an election after a node was lost).
            # Ask again after a backoff (doubling to PULL_BACKOFF_MAX_S), not at once in a loop.
            self.outstanding = 0
            delay = self.backoff
            self.backoff = min(2 * self.backoff, PULL_BACKOFF_MAX_S)
            self.hold_until = time.monotonic() + delay
            asyncio.get_running_loop().call_later(delay, self.wake.set)
            if delay >= PULL_BACKOFF_MAX_S:
                logger.warning("pull consumer %s: no responders (no consumer leader); asking again", self.api_subject)
            return
        pending = headers.get("Nats-Pending-Messages")
        if pending is not None:
            self.outstanding = max(0, self.outstanding - int(pending))
        elif status in ("404", "408", "409"):
            self.outstanding = 0
        if status == "409":
            logger.warning("pull consumer %s: 409 %s", self.api_subject, headers.get("Description", ""))

    def _delivery(self, subject: str, reply: str, headers: dict[str, str], data: bytes) -> _Delivery | None:
        ack = parse_ack_subject(reply)
        if ack is None:
            logger.warning("unexpected ack subject %r", reply)
            return None
        return _Delivery(RawRecord(ack.stream_seq, subject, headers, data, ack.time_ns), ack.delivered, reply, self)


class JetStreamLog:
    """``EventLog`` on NATS JetStream.

    Create with ``await JetStreamLog.connect(url)`` (owns the connection) or
    ``JetStreamLog(nc)`` + ``await log.setup()`` (borrows one). Either way the first log made on a
    connection runs the gate of ``_natspy`` on it: when it passes (and the fast path is wanted),
    the connection parses message headers with ``wire.parse_header_lines`` and the protocol with
    ``_natspy.ProtocolParser`` from then on (nats-py's results, at a fraction of the cost; set on
    that client instance only), and the log's own publishes go out through ``pub.Outbox``.

    Args:
        nc: a connected nats-py client.
        prefix: subject prefix (default ``"jetloom"``).
        stream: stream name (default ``"JETLOOM"``, or the prefix upper-cased).
        ack_wait: how long a delivery may stay unsettled before redelivery (default 6 s): after a
            worker dies, its triggers run again in another process this long after its last
            in-progress ack. Applied to the step consumers this log creates or updates
            (``ensure_consumer``; a change to an existing consumer is logged).
        progress_heartbeat: how often held deliveries (running or buffered) are kept alive with
            an in-progress ack (default: 2 s, or a third of ``ack_wait`` when that is shorter);
            must be shorter than ``ack_wait``.
        duplicate_window: how long idempotency keys are remembered by the server (default 2 min);
            older duplicates are caught by the fold (the completion is already in the run's log).
        storage: ``"file"`` (default) or ``"memory"``.
        request_timeout: seconds to wait for a publish ack or a read (default 10).
        prefetch: deliveries buffered per consumer beyond ``num_workers`` (default: ``num_workers``).
        commit: how a multi-message append is published: ``"pipelined"`` (default; ordered,
            idempotent per message, not atomic) or ``"batch"`` (one atomic batch, server 2.12+,
            a few fsyncs each on a file stream and serialized per stream).
        replicas: replicas of the streams (and of the buckets beside them, ``kv.open_bucket``)
            that ``setup()`` creates (default 1; 3 on a three-node cluster). An existing stream
            keeps its own (``streams``).
        retry_for: how long a request that fails transiently (no responders, timeout, no
            leader: ``retry.is_transient``) is retried with backoff before
            ``retry.LogUnavailableError`` (default 20 s, about twice a leader election).
        fast_path: whether to bypass nats-py's per-message layers (its protocol and header
            parsers, ``Client.publish``, ``Msg`` objects: ``_natspy``). ``None`` (default): wanted
            unless the environment variable ``JETLOOM_NATS_FASTPATH`` is
            ``0``/``false``/``no``/``off``. ``False`` runs everything through nats-py's public
            API, as happens when the gate of ``_natspy`` refuses the installed nats-py (one
            WARNING says why); same behaviour, more CPU per message. The attribute of the same
            name says which path the log is on.

    Raises:
        ValueError: an unknown ``commit`` mode; ``progress_heartbeat`` not shorter than
            ``ack_wait``, or either not positive.
    """

    def __init__(
        self,
        nc: NATS,
        *,
        prefix: str = DEFAULT_PREFIX,
        stream: str | None = None,
        ack_wait: timedelta | float = DEFAULT_ACK_WAIT,
        progress_heartbeat: timedelta | float | None = None,
        duplicate_window: timedelta | float = timedelta(minutes=2),
        storage: str = "file",
        request_timeout: float = 10.0,
        prefetch: int | None = None,
        commit: str = "pipelined",
        replicas: int = 1,
        retry_for: timedelta | float = DEFAULT_RETRY_FOR,
        fast_path: bool | None = None,
        owns_connection: bool = False,
    ) -> None:
        if commit not in ("pipelined", "batch"):
            raise ValueError(f"commit must be 'pipelined' or 'batch', got {commit!r}")
        self.ack_wait = seconds(ack_wait)
        self.progress_heartbeat = check_lease(
            self.ack_wait, None if progress_heartbeat is None else seconds(progress_heartbeat)
        )
        self.nc = nc
        # the gate runs once per connection (_natspy.tap); None: nats-py's public API throughout
        self.tap = tap(nc, enabled=fast_path_from_env() if fast_path is None else fast_path)
        self.fast_path = self.tap is not None
        self.js = nc.jetstream(timeout=request_timeout)
        self.prefix = prefix
        self.stream = stream or ("JETLOOM" if prefix == DEFAULT_PREFIX else prefix.upper())
        self.dlq_stream = f"{self.stream}_DLQ"
        self.duplicate_window = seconds(duplicate_window)
        self.storage = StorageType.FILE if storage == "file" else StorageType.MEMORY
        self.timeout = request_timeout
        self.prefetch = prefetch
        self.replicas = replicas
        self.retry_for = seconds(retry_for)
        self._owns = owns_connection
        self._inbox = ReadInbox(nc, self.tap)  # every direct get's replies
        self.commit = commit
        self.atomic = commit == "batch"
        self._acks: AckInbox | None = None
        self.head_seq = 0  # the newest stream sequence this log has seen (acks, reads)
        self.outbox = Outbox(nc, enabled=self.fast_path)  # the hot path's publishes (pub)
        self._ensured: dict[tuple[str, str], tuple[str, ...]] = {}  # consumers set up by this log
        self._hubs: dict[tuple[str, str | None], FollowHub] = {}  # (workflow, kind or every kind)
        self._typed: dict[tuple[str, str], FollowHub] = {}  # (workflow, kind.type): follow_type

    @classmethod
    async def connect(
        cls, servers: str | NatsSettings = DEFAULT_URL, *, name: str | None = None, **kwargs: Any
    ) -> JetStreamLog:
        """Connect (``connection.open_connection``), create the streams if needed, and return a
        log that closes the connection on ``close()``.

        Args:
            servers: a server URL (or comma-separated URLs), or ``NatsSettings`` with credentials
                and the replicas of what set-up creates.
            name: the client's name on the server (e.g. ``jetloom-worker``).
            **kwargs: those of the constructor (``replicas`` defaults to the settings').
        """
        settings = servers if isinstance(servers, NatsSettings) else NatsSettings(url=servers)
        kwargs.setdefault("replicas", settings.replicas)
        nc = await open_connection(settings, name=name)
        log = cls(nc, owns_connection=True, **kwargs)
        await log.setup()
        return log

    async def setup(self) -> None:
        """Create the run stream and the dead-letter stream when missing, with ``replicas``; on
        an existing stream add only what jetloom needs (its subjects, the ``allow_*`` flags it
        uses) and log each other difference, leaving it as the operator set it
        (``streams.ensure_stream``). Rides through a leader election (``retry.retrying``).

        Raises:
            retry.LogUnavailableError: the cluster had no leader for the streams within
                ``retry_for``.
            nats.js.errors.APIError: the server refused (e.g. subjects overlapping another stream).
        """
        storage = "file" if self.storage == StorageType.FILE else "memory"
        await ensure_stream(
            self.nc,
            {
                "name": self.stream,
                "subjects": [f"{self.prefix}.run.>"],
                "storage": storage,
                "num_replicas": self.replicas,
                "duplicate_window": int(self.duplicate_window * _NS),
                **dict.fromkeys(_RUN_STREAM_FLAGS, True),
            },
            flags=_RUN_STREAM_FLAGS,
            timeout=self.timeout,
            retry_for=self.retry_for,
        )
        await ensure_stream(
            self.nc,
            {
                "name": self.dlq_stream,
                "subjects": [f"{self.prefix}.dlq.>"],
                "storage": storage,
                "num_replicas": self.replicas,
                "allow_direct": True,
            },
            flags=("allow_direct",),
            timeout=self.timeout,
            retry_for=self.retry_for,
        )

    async def close(self) -> None:
        if self._acks is not None:
            await self._acks.close()
        for hub in [*self._hubs.values(), *self._typed.values()]:
            await hub.close()
        self._hubs.clear()
        self._typed.clear()
        if self._owns and not self.nc.is_closed:
            await self.nc.drain()

    # ---- append -----------------------------------------------------------------------------

    async def append(
        self,
        messages: Sequence[OutMessage],
        *,
        idempotency_key: str | None = None,
        indices: Sequence[int] | None = None,
        expected_last_seq: int | None = None,
    ) -> AppendResult:
        if not messages:
            return AppendResult(None, 0)
        # Retried whole through a leader election: every message carries its Nats-Msg-Id, so what
        # an attempt stored is reported a duplicate to the next (the server checks the id before
        # the expected last sequence), and the commit protocol completes a partial one.
        if self.atomic and len(messages) > 1 and indices is None:
            return await self._retry(
                "append to " + self.stream, lambda: self._append_batch(messages, idempotency_key)
            )
        return await self._retry(
            "append to " + self.stream,
            lambda: self._append_pipelined(messages, idempotency_key, indices, expected_last_seq),
        )

    async def _retry(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()``, retried through transient failures for ``retry_for`` (``retry.retrying``)."""
        return await retrying(what, call, retry_for=self.retry_for)

    async def _append_pipelined(
        self,
        messages: Sequence[OutMessage],
        key: str | None,
        indices: Sequence[int] | None,
        expected_last_seq: int | None,
    ) -> AppendResult:
        limit = self.nc.max_payload
        for m in messages:
            if len(m.data) > limit:
                raise CommitTooLargeError(
                    f"a message of {len(m.data):,} bytes exceeds the server's max_payload of "
                    f"{limit:,} bytes (a commit's first record carries a copy of everything the "
                    "step emitted; raise max_payload in the server config, see nats.conf)",
                )
        positions = list(indices) if indices is not None else list(range(len(messages)))
        head_first = positions[0] == 0 and (key is not None or expected_last_seq is not None)
        futures = []
        for n, (m, i) in enumerate(zip(messages, positions, strict=True)):
            headers = dict(m.headers)
            if n == 0 and expected_last_seq is not None:
                self._expect(headers, m.subject, expected_last_seq)
            if key is not None:  # (index 0: the key itself, no commit tag to parse)
                headers["Nats-Msg-Id"] = message_id(key, i, execution_of(m.headers) if i else None)
            futures.append(await self._send(m.subject, m.data, headers))
        await self.outbox.flush()
        # All at once: the head decides whose commit stands, and the fold leaves out what another
        # execution's messages put in the log meanwhile (engine.wire.commit), so nothing waits for it.
        acks = await self._gather(futures)
        if head_first and acks[0].get("duplicate"):
            seq = int(acks[0].get("seq") or 0)
            return AppendResult(seq or None, 0, duplicate=True, seqs=(seq,))
        seqs = tuple(int(a.get("seq") or 0) for a in acks)
        if seqs[-1] > self.head_seq:
            self.head_seq = seqs[-1]
        count = sum(1 for a in acks if not a.get("duplicate"))
        return AppendResult(seqs[-1] or None, count, duplicate=count == 0, seqs=seqs)

    def predecessor(self, record: RawRecord) -> int | None:
        h = record.headers
        value = h.get(_H_EXPECTED_SEQ)
        if value is None or not value.isdigit():
            return None
        parts = subject_parts(record.subject)  # (remembered per subject: a run uses a handful)
        if parts is None or h.get(_H_EXPECTED_SUBJECT) != run_filter(self.prefix, parts.workflow, parts.run_id):
            return None
        return int(value)

    def _expect(self, headers: dict[str, str], subject: str, expected_last_seq: int) -> None:
        """Add to ``headers`` the check that the run of ``subject`` ends at ``expected_last_seq``."""
        parts = subject_parts(subject)
        if parts is None:
            raise ValueError(f"not a run subject: {subject!r}")
        headers[_H_EXPECTED_SEQ] = str(expected_last_seq)
        headers[_H_EXPECTED_SUBJECT] = run_filter(self.prefix, parts.workflow, parts.run_id)

    async def _send(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Future[bytes]:
        """Queue a publish with a reply subject of our own (sent at ``self.outbox.flush()``); the
        future resolves to the ack (and fails with ``LogError`` when none comes within the
        request timeout: ``acks``)."""
        acks = self._acks
        if acks is None:
            acks = self._acks = AckInbox(self.nc, self._read_tap(), self.timeout)
        if not acks.ready:
            await acks.open()
        reply, future = acks.new()
        try:
            if not self.outbox.put(subject, data, reply, headers):
                await self.nc.publish(subject, data, reply=reply, headers=headers or None)
        except BaseException:
            acks.drop(reply)
            raise
        return future

    async def _gather(self, futures: list[asyncio.Future[bytes]]) -> list[dict[str, Any]]:
        try:
            datas = [await f for f in futures]
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()
        acks = []
        for data in datas:
            if not data:  # a 503 status: nobody serves the stream's subjects (no leader)
                raise LogUnavailableError("append: no responders (the stream has no leader)")
            ack = orjson.loads(data)
            err = ack.get("error")
            if err is not None:
                code = err.get("err_code")
                cls = LastSeqMismatchError if code == ERR_WRONG_LAST_SEQ else AppendError
                raise cls(f"append rejected: {err.get('description')}", code=code)
            acks.append(ack)
        return acks

    async def _append_batch(self, messages: Sequence[OutMessage], key: str | None) -> AppendResult:
        last = messages[-1]
        batch_id = uuid.uuid4().hex
        for i, m in enumerate(messages[:-1], 1):
            headers = {**m.headers, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)}
            if i == 1 and key is not None:
                headers["Nats-Msg-Id"] = key
            await self.nc.publish(m.subject, m.data, headers=headers)
        headers = dict(last.headers)
        headers["Nats-Batch-Id"] = batch_id
        headers["Nats-Batch-Sequence"] = str(len(messages))
        headers["Nats-Batch-Commit"] = "1"
        reply = await self.nc.request(last.subject, last.data, headers=headers, timeout=self.timeout)
        ack = orjson.loads(reply.data)
        err = ack.get("error")
        if err is not None:
            code = err.get("err_code")
            if code == ERR_BATCH_DUPLICATE:
                return AppendResult(None, 0, duplicate=True)
            if code == ERR_BATCH_TOO_LARGE:
                raise CommitTooLargeError(
                    f"append of {len(messages)} messages rejected: {err.get('description')} "
                    "(raise jetstream.limits.batch.max_msgs in the server config; see nats.conf)",
                    code=code,
                )
            raise AppendError(f"append rejected: {err.get('description')}", code=code)
        return AppendResult(ack["seq"], len(messages))

    # ---- read -------------------------------------------------------------------------------

    async def _scan(
        self, stream: str, subject_filter: str, after_seq: int, up_to_seq: int | None
    ) -> list[RawRecord]:
        """The records of ``stream`` matching ``subject_filter`` after ``after_seq`` (up to
        ``up_to_seq``), by batched direct gets of ``DIRECT_GET_BATCH``."""
        out: list[RawRecord] = []
        start = after_seq + 1
        while True:
            # (the server honours up_to_seq only with multi_last, so the bound is applied here)
            req = {"seq": start, "next_by_subj": subject_filter, "batch": DIRECT_GET_BATCH}
            got, _ = await direct_read(self.nc, self._inbox, stream, req, self.timeout)
            for rec in got:
                if up_to_seq is not None and rec.seq > up_to_seq:
                    return out
                out.append(rec)
            if len(got) < DIRECT_GET_BATCH:
                return out
            start = got[-1].seq + 1

    async def read(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        expect: int | None = None,
    ) -> list[RawRecord]:
        return await self._retry(
            f"read of run {run_id}", lambda: self._read(workflow, run_id, after_seq, up_to_seq, expect)
        )

    async def _read(
        self, workflow: str, run_id: str, after_seq: int, up_to_seq: int | None, expect: int | None
    ) -> list[RawRecord]:
        # A short read of an old run that the caller can bound (``up_to_seq`` more than
        # WALK_DISTANCE records behind the newest sequence this log has seen, ``expect`` of at
        # most WALK_MAX) is walked one direct get per record: a batched direct get
        # on a run's wildcard filter makes the server count the matches after its start
        # (NumPending) and look past the run's end, over every message block from there on: for
        # a run in the middle of a long stream that costs the server far more than a walk of a
        # few single-record gets (nats-server 2.15.1). Near the stream's end the batch is cheap for the server and the walk's round trips cost the
        # client more (scenario (e) of ``benchmarks`` showed it in the workers' CPU per
        # transition when every short read was walked).
        subject_filter = run_filter(self.prefix, workflow, run_id)
        tap = self.tap
        if tap is None:  # nats-py's public API: batched direct gets only
            return await self._scan(self.stream, subject_filter, after_seq, up_to_seq)
        out: list[RawRecord] = []
        old_part = up_to_seq is not None and self.head_seq - up_to_seq > WALK_DISTANCE
        if up_to_seq is not None and expect is not None and expect <= WALK_MAX and old_part:
            inbox = self._inbox
            while after_seq < up_to_seq:
                if len(out) == WALK_MAX:  # more than the caller thought: read the rest in batches
                    return out + await self._read_batched(subject_filter, tap, after_seq, up_to_seq)
                request = {"seq": after_seq + 1, "next_by_subj": subject_filter}
                got, _ = await direct_read(self.nc, inbox, self.stream, request, self.timeout)
                if not got or got[0].seq > up_to_seq:
                    break
                out.append(got[0])
                after_seq = got[0].seq
            return out
        out = await self._read_batched(subject_filter, tap, after_seq, up_to_seq)
        if out and out[-1].seq > self.head_seq:
            self.head_seq = out[-1].seq
        return out

    async def _read_batched(
        self, subject_filter: str, tap: Tap, after_seq: int, up_to_seq: int | None
    ) -> list[RawRecord]:
        # Direct gets, the first of FIRST_READ records; when its last one says more than
        # LONG_READ follow, the rest through a consumer made for this read (read.ConsumerRead:
        # less server and client CPU per record, for a few ms to set up). Replies come straight
        # from the protocol parser (_natspy.Tap).
        out: list[RawRecord] = []
        last, batch, consumer = after_seq, FIRST_READ, True
        while True:
            request = {"seq": last + 1, "next_by_subj": subject_filter, "batch": batch}
            got, pending = await direct_read(self.nc, self._inbox, self.stream, request, self.timeout)
            out.extend(got)
            if up_to_seq is not None and out and out[-1].seq >= up_to_seq:
                # (the server honours up_to_seq only with multi_last, so the bound is applied here)
                while out and out[-1].seq > up_to_seq:
                    out.pop()
                return out
            if len(got) < batch or not pending:
                return out
            last, batch = got[-1].seq, DIRECT_GET_BATCH
            if consumer and pending > LONG_READ and (up_to_seq is None or up_to_seq - last > LONG_READ):
                consumer = False
                reader = ConsumerRead(self.nc, tap, self.stream, subject_filter, last + 1, up_to_seq, self.timeout)
                try:
                    out.extend(await reader.run())
                except (LogError, TimeoutError) as exc:
                    reader.stopped = str(exc) or type(exc).__name__
                if reader.complete:
                    return out
                # (e.g. a server at its consumer limit): direct gets read the rest
                logger.info("read of %s by a consumer stopped (%s); direct gets read on", subject_filter, reader.stopped)
                last = out[-1].seq

    def _read_tap(self) -> Tap | None:
        """The connection's fast path (``self.tap``), or ``None`` on nats-py's public API."""
        return self.tap

    async def watch(self, subject: str) -> AsyncIterator[RawRecord]:
        """Messages published on ``subject`` (wildcards allowed) from now on, as they are
        published: a core NATS subscription, so neither stored history nor messages stored by a
        message schedule are seen, and ``seq``/``time_ns`` are 0. For prompt notices (a run's
        cancel), never as the record of what happened."""
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        sub = await self.nc.subscribe(subject, cb=queue.put)
        try:
            while True:
                msg = await queue.get()
                yield RawRecord(0, msg.subject, dict(msg.headers or {}), msg.data, 0)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def follow(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        kinds: Collection[str] | None = None,
    ) -> AsyncIterator[RawRecord]:
        # The stored records by direct get, then a shared follow consumer of the workflow
        # (``follow.FollowHub``, which hands this follower only ``kinds``): registered first, so
        # nothing falls between the two. A follower of one kind takes that kind's hub (one filter,
        # ``<prefix>.run.<workflow>.*.<kind>.>``): a handler awaiting a run's end receives its
        # ``sys`` records only, not every event of every run of the workflow.
        wanted = None if kinds is None else frozenset(kinds)
        hub = self._hub(workflow, wanted)
        queue = await hub.register(run_id, wanted)
        try:
            last = after_seq
            for rec in await self.read(workflow, run_id, after_seq=after_seq):
                last = rec.seq
                if wanted is None or rec.subject.rsplit(".", 2)[1] in wanted:
                    yield rec
            while True:
                rec = await queue.get()
                if rec.seq > last:
                    last = rec.seq
                    yield rec
        finally:
            hub.unregister(run_id, queue.put_nowait)

    async def follow_callback(
        self,
        workflow: str,
        run_id: str,
        sink: Callable[[RawRecord], None],
        *,
        kinds: Collection[str] | None = None,
    ) -> Callable[[], None]:
        # The follow hub's delivery callback calls ``sink`` itself (from the protocol parser).
        wanted = None if kinds is None else frozenset(kinds)
        hub = self._hub(workflow, wanted)
        await hub.add(run_id, sink, wanted)
        return lambda: hub.unregister(run_id, sink)

    async def follow_type(
        self, workflow: str, kind: str, type_name: str, sink: Callable[[RawRecord], None]
    ) -> Callable[[], None]:
        # A follow hub of its own, filtered on that one record type of every run: a consumer of
        # one filter subject that delivers what the stream stores, so a record a message
        # schedule fires (a run timeout) reaches it too.
        key = (workflow, f"{kind}.{type_name}")
        hub = self._typed.get(key)
        if hub is None:
            subjects = f"{self.prefix}.run.{workflow}.*.{kind}.{type_name}"
            hub = self._typed[key] = FollowHub(self.nc, self.stream, subjects, self.timeout, self._read_tap())
        await hub.add(EVERY_RUN, sink)
        return lambda: hub.unregister(EVERY_RUN, sink)

    def _hub(self, workflow: str, kinds: frozenset[str] | None) -> FollowHub:
        """The follow hub of ``workflow`` for followers of ``kinds``: a follower of one kind takes
        that kind's hub (one filter, ``<prefix>.run.<workflow>.*.<kind>.>``), others the hub of
        every kind."""
        kind = next(iter(kinds)) if kinds is not None and len(kinds) == 1 else None
        hub = self._hubs.get((workflow, kind))
        if hub is None:
            subjects = f"{self.prefix}.run.{workflow}." + (">" if kind is None else f"*.{kind}.>")
            hub = self._hubs[(workflow, kind)] = FollowHub(self.nc, self.stream, subjects, self.timeout, self._read_tap())
        return hub

    # ---- queries across runs (control plane) -------------------------------------------------

    async def scan(
        self, subject_filter: str, *, after_seq: int = 0, limit: int = DIRECT_GET_BATCH
    ) -> list[RawRecord]:
        """Up to ``limit`` records matching ``subject_filter`` (wildcards allowed) with
        ``seq > after_seq``, in sequence order; one batched direct get per 1,000
        (``read.direct_read``, as every direct get of the log)."""
        return await self._retry(
            f"scan of {subject_filter}", lambda: self._scan_records(subject_filter, after_seq, limit)
        )

    async def _scan_records(self, subject_filter: str, after_seq: int, limit: int) -> list[RawRecord]:
        out: list[RawRecord] = []
        start = after_seq + 1
        while len(out) < limit:
            want = min(limit - len(out), DIRECT_GET_BATCH)
            request = {"seq": start, "next_by_subj": subject_filter, "batch": want}
            got, _ = await direct_read(self.nc, self._inbox, self.stream, request, self.timeout)
            out.extend(got)
            if len(got) < want:
                break
            start = out[-1].seq + 1
        return out

    async def last_per_subject(self, subject_filters: Sequence[str]) -> list[RawRecord]:
        """The last record of every subject matching any of ``subject_filters`` (a batched
        ``multi_last`` direct get), in sequence order."""
        return await self._retry("last records of runs", lambda: self._last_per_subject(subject_filters))

    async def _last_per_subject(self, subject_filters: Sequence[str]) -> list[RawRecord]:
        out: list[RawRecord] = []
        filters = list(subject_filters)
        for i in range(0, len(filters), MULTI_LAST_SUBJECTS):
            request = {"multi_last": filters[i : i + MULTI_LAST_SUBJECTS], "batch": DIRECT_GET_BATCH}
            got, _ = await direct_read(self.nc, self._inbox, self.stream, request, self.timeout)
            out.extend(got)
        return sorted(out, key=lambda r: r.seq)

    # ---- consumers --------------------------------------------------------------------------

    async def ensure_consumer(
        self, workflow: str, step: str, event_types: Sequence[str], *, update: bool = True
    ) -> None:
        # (idempotent, so retried whole through a leader election)
        await self._retry(
            f"set-up of the consumers of step {workflow}.{step}",
            lambda: self._ensure_consumer(workflow, step, event_types, update),
        )

    async def _ensure_consumer(
        self, workflow: str, step: str, event_types: Sequence[str], update: bool
    ) -> None:
        # Durable consumers of one filter subject each: one per accepted event type (the first,
        # in sorted order, under the step's own name), and the step's commands (``cmd.<step>``)
        # apart. A consumer with several filters makes nats-server 2.15 intersect the stream's
        # per-subject index with them each time its position crosses into a new message block
        # (``checkSkipFirstBlockMulti``: every run of the workflow, up to 1,000,000 subjects; with
        # one filter, ``LoadNextMsg``'s check stops at 64,000). With many finished runs kept,
        # (b) of ``benchmarks --retained-runs`` shows the difference in the server's CPU per
        # transition and in the p99.
        sources = event_consumers(event_types)
        events = tuple(f"{self.prefix}.run.{workflow}.*.evt.{t}" for _, t in sources)
        known = self._ensured.get((workflow, step))
        if known is not None and (not update or known == events):
            # Set up by this log already: an in-process workflow restarting its executor for the
            # next run does not pay the consumer API round trips again.
            return
        # (the split consumers first: a step consumer made by an older jetloom also delivered the
        # step's commands and its other event types, and each new consumer starts after what that
        # one has acknowledged)
        name = consumer_name(workflow, step)
        old = await self._consumer_info(name)
        changes: list[tuple[str, float]] = []  # existing consumers whose ack_wait changes
        if update and old is not None:
            self._note_lease(old, changes)
        await self._ensure_split(
            commands_consumer_name(workflow, step),
            f"jetloom step commands {workflow}.{step}",
            f"{self.prefix}.run.{workflow}.*.cmd.{step}",
            old,
            update,
            changes,
        )
        for (source, t), subject in zip(sources[1:], events[1:], strict=True):
            await self._ensure_split(
                consumer_name(workflow, step, source),
                f"jetloom step {workflow}.{step} ({t})",
                subject,
                old,
                update,
                changes,
            )
        if update or old is None:
            await self._add_durable(name, f"jetloom step {workflow}.{step}", events[:1])
        if changes:
            logger.info(
                "step %s.%s: ack_wait of existing consumers changed to %gs (%s)",
                workflow,
                step,
                self.ack_wait,
                ", ".join(f"{n}: was {w:g}s" for n, w in changes),
            )
        self._ensured[(workflow, step)] = events

    def _note_lease(self, info: ConsumerInfo, changes: list[tuple[str, float]]) -> None:
        """Add to ``changes`` an existing consumer whose ``ack_wait`` the coming update changes."""
        was = info.config.ack_wait
        if was is not None and abs(was - self.ack_wait) > 1e-3:
            changes.append((info.name, was))

    async def _ensure_split(
        self,
        name: str,
        description: str,
        subject: str,
        old: ConsumerInfo | None,
        update: bool,
        changes: list[tuple[str, float]],
    ) -> None:
        """A step's consumer of ``subject`` apart from its main one; ``old``: the main consumer
        as it was, if any. Made from scratch it starts after what ``old`` acknowledged when
        ``old`` delivered ``subject`` too (a consumer of an older jetloom), else at the start."""
        info = await self._consumer_info(name)
        if info is not None and not update:
            return
        if info is not None:
            self._note_lease(info, changes)
        if info is not None:  # (its delivery start cannot change; the rest is brought up to date)
            policy, start = info.config.deliver_policy, info.config.opt_start_seq
        elif old is not None and subject in (old.config.filter_subjects or [old.config.filter_subject]):
            floor = old.ack_floor.stream_seq if old.ack_floor else 0
            policy, start = DeliverPolicy.BY_START_SEQUENCE, floor + 1
        else:
            policy, start = DeliverPolicy.ALL, None
        await self._add_durable(name, description, [subject], policy, start)

    async def _consumer_info(self, name: str) -> ConsumerInfo | None:
        try:
            return await self.js.consumer_info(self.stream, name)
        except NotFoundError:
            return None

    async def _add_durable(
        self,
        name: str,
        description: str,
        filters: Sequence[str],
        policy: DeliverPolicy | None = DeliverPolicy.ALL,
        start_seq: int | None = None,
    ) -> None:
        """Create or update a step's durable pull consumer (explicit acks, no delivery limit)."""
        config = ConsumerConfig(
            durable_name=name,
            description=description,
            deliver_policy=policy,
            opt_start_seq=start_seq,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=20_000,
            max_waiting=512,
        )
        if len(filters) == 1:
            config.filter_subject = filters[0]
        else:
            config.filter_subjects = list(filters)
        await self.js.add_consumer(self.stream, config)

    async def consume(
        self,
        workflow: str,
        step: str,
        *,
        max_in_flight: int,
        commands: bool = False,
        event_type: str | None = None,
        dispatch: Callable[[Delivery], None] | None = None,
    ) -> AsyncIterator[_Delivery]:
        name = commands_consumer_name(workflow, step) if commands else consumer_name(workflow, step, event_type)
        pull = _Pull(
            self.nc,
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{name}",
            max_in_flight=max_in_flight,
            prefetch=self.prefetch if self.prefetch is not None else max_in_flight,
            expires=30.0,
            heartbeat=PULL_HEARTBEAT_S,
            ack_wait=self.ack_wait,
            progress=self.progress_heartbeat,
            tap=self._read_tap(),
            outbox=self.outbox,
            dispatch=dispatch,
        )
        async for delivery in pull.run():
            yield delivery

    # ---- dead letters -----------------------------------------------------------------------

    async def schedule(
        self, message: OutMessage, *, at_ns: int, name: str, idempotency_key: str
    ) -> None:
        parts = parse_subject(message.subject)
        if parts is None:
            raise ValueError(f"not a run subject: {message.subject!r}")
        at = datetime.fromtimestamp(max(at_ns, time.time_ns()) / 1e9, tz=UTC)
        headers = {
            **message.headers,
            "Nats-Schedule": "@at " + at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "Nats-Schedule-Target": message.subject,
            "Nats-Msg-Id": idempotency_key,
        }
        subject = run_subject(self.prefix, parts.workflow, parts.run_id, "sch", name)
        # (its Nats-Msg-Id makes a repeat a duplicate)
        reply = await self._retry(
            f"schedule on {subject}",
            lambda: self.nc.request(subject, message.data, headers=headers, timeout=self.timeout),
        )
        err = orjson.loads(reply.data).get("error")
        if err is not None:
            raise AppendError(f"schedule rejected: {err.get('description')}", code=err.get("err_code"))

    async def unschedule(self, workflow: str, run_id: str, name: str) -> None:
        # A message schedule lives as long as its message: the server drops the timer when the
        # message is purged (ADR-51), and a purge of a subject with no message is a no-op.
        subject = run_subject(self.prefix, workflow, run_id, "sch", name)
        try:
            await self._retry(
                "purge of " + subject, lambda: self.js.purge_stream(self.stream, subject=subject)
            )
        except APIError as exc:
            raise LogError(f"the purge of {subject} was refused: {exc.description}") from exc

    async def dead_letter(self, record: RawRecord, *, reason: str, consumer: str) -> None:
        parts = parse_subject(record.subject)
        wf = parts.workflow if parts else "unknown"
        headers = {
            "Jl-Reason": reason[:4000].replace("\r", " ").replace("\n", " "),
            "Jl-Original-Subject": record.subject,
            "Jl-Original-Seq": str(record.seq),
            "Jl-Consumer": consumer,
        }
        await self._retry(
            "dead letter to " + self.dlq_stream,
            lambda: self.js.publish(
                f"{self.prefix}.dlq.{wf}.{consumer}", record.data, stream=self.dlq_stream, headers=headers
            ),
        )

    async def dead_letters(self) -> list[DeadLetter]:
        records = await self._retry(
            "read of " + self.dlq_stream, lambda: self._scan(self.dlq_stream, f"{self.prefix}.dlq.>", 0, None)
        )
        out = []
        for rec in records:
            h = rec.headers
            out.append(
                DeadLetter(
                    seq=rec.seq,
                    subject=rec.subject,
                    original_subject=h.get("Jl-Original-Subject", ""),
                    original_seq=int(h["Jl-Original-Seq"]) if "Jl-Original-Seq" in h else None,
                    reason=h.get("Jl-Reason", ""),
                    consumer=h.get("Jl-Consumer", ""),
                    data=rec.data,
                )
            )
        return out
