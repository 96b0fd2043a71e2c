"""``JetStreamLog``: the durable event log on NATS JetStream (nats-py).

One stream (default ``JETLOOM``) holds every run's records on ``<prefix>.run.>``; a second
(``JETLOOM_DLQ``) holds dead letters on ``<prefix>.dlq.>``. Primitives, as checked on nats-server
2.15 (DESIGN.md §6):

- appends are pipelined by default (``commit="pipelined"``): the first message is published and its
  ack awaited, then the others are published without waiting for each ack, each with its own
  ``Nats-Msg-Id`` (``<key>`` for the first, ``<key>/<i>`` for the others, see
  ``engine.wire.commit``), and the acks are gathered. A repeated id is reported by the server as a
  duplicate (``duplicate: true``) and not stored. Not atomic: a crash part-way leaves a prefix.
  Cost on a file stream, 2 cores: ≈ one publish round trip (~0.15 ms) plus ~20 µs per message,
  against ≈ 2.2 ms per atomic batch (3 fsyncs, batches serialized per stream).
- ``commit="batch"`` keeps atomic batches (``Nats-Batch-Id``/``-Sequence``/``-Commit``, server
  2.12+) with the key as ``Nats-Msg-Id`` on the first message; a duplicate batch is rejected with
  ``err_code`` 10201 and nothing is stored.
- a run is read with a batched direct get (``next_by_subj`` = the run's filter) of 128 records;
  when more than 128 follow, the rest comes through a push consumer made for the read and deleted
  after it (``jsread``: a direct get costs the server ≈ 8 µs per record, a delivery ≈ 2 µs),
  otherwise from more direct gets of up to 1,000. Replies reach the read without nats-py's
  ``Msg``, queue and task per message (``jsread.RawTap``). 100,000 records: 1.7 s → 0.6 s.
- a run is followed by reading it, then through one ordered push consumer per workflow shared by
  every follow in the process (``jsfollow.FollowHub``; a consumer per run costs the server ≈ 4.4 ms
  of CPU to create and delete).
- each step's consumer is a durable pull consumer; deliveries come from a continuous pull loop
  (pull requests refilled as deliveries settle, idle heartbeats, a watchdog that re-pulls when the
  server goes quiet), not from ``fetch(batch=1)`` (2.1k vs 20k transitions/s, DESIGN.md §2).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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

from engine.jetstream.acks import AckInbox
from engine.jetstream.connection import DEFAULT_URL, NatsSettings, open_connection
from engine.jetstream.follow import EVERY_RUN, FollowHub
from engine.jetstream.proto import install_protocol_parser
from engine.jetstream.pub import Outbox, fast_path_from_env
from engine.jetstream.read import (
    FIRST_READ,
    LONG_READ,
    WALK_DISTANCE,
    WALK_MAX,
    ConsumerRead,
    RawTap,
    ReadInbox,
    direct_read,
    subscribe_tapped,
)
from engine.jetstream.retry import DEFAULT_RETRY_FOR, LogUnavailableError, retrying
from engine.jetstream.streams import ensure_stream
from engine.jetstream.wire import (
    install_header_parser,
    is_status,
    parse_block,
    parse_rfc3339_ns,
    parse_status,
)
from engine.model.durations import seconds
from engine.model.errors import AppendError, CommitTooLargeError, LastSeqMismatchError, LogError
from engine.model.records import OutMessage, RawRecord
from engine.ports.log import AppendResult, DeadLetter, Delivery, event_consumers
from engine.wire.codec import subject_parts
from engine.wire.headers import execution_of, message_id
from engine.wire.subjects import DEFAULT_PREFIX, parse_subject, run_filter, run_subject

__all__ = ["DEFAULT_ACK_WAIT", "DEFAULT_PROGRESS_HEARTBEAT", "JetStreamLog", "check_lease", "commands_consumer_name", "consumer_name", "parse_ack_subject", "parse_rfc3339_ns"]

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
# ack, so these two bound crash recovery: 6 s (≈ 6–7 s measured from the kill to the rerun in
# another process, benchmarks scenario (k)), while a running step renews its lease 3 times per
# ack_wait and keeps it through two lost heartbeats.
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


def parse_ack_subject(reply: str) -> tuple[int, int, int] | None:
    """``(delivery count, stream sequence, timestamp ns)`` from a JetStream ack subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``, or the ADR-15 v2
    form with domain and account hash); ``None`` if it is not one. Keeps the server's nanoseconds,
    which nats-py's metadata rounds to microseconds."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[4]), int(tokens[5]), int(tokens[7])
    if len(tokens) >= 11:
        return int(tokens[6]), int(tokens[7]), int(tokens[9])
    return None


def consumer_name(workflow: str, step: str, event_type: str | None = None) -> str:
    """The durable consumer name of a workflow's step's events: ``<workflow>--<step>`` for its
    first accepted event type (in sorted order; its only one for most steps), and
    ``<workflow>--<step>--evt--<event_type>`` for each other type it accepts."""
    return f"{workflow}--{step}" if event_type is None else f"{workflow}--{step}--evt--{event_type}"


def commands_consumer_name(workflow: str, step: str) -> str:
    """The durable consumer name of a workflow's step's commands (``cmd.<step>``)."""
    return f"{workflow}--{step}--cmd"


class _Batch:
    """The replies to one batched direct get, gathered as they arrive."""

    __slots__ = ("msgs", "done", "headers")

    def __init__(self) -> None:
        self.msgs: list[Msg] = []
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.headers: dict[str, str] = {}

    def add(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self.msgs.append(msg)
        elif not self.done.done():
            self.headers = msg.headers or {}
            self.done.set_result(status)


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
        tap: RawTap | None = None,
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
        """A message of the pull inbox as the protocol parser has it (``jsread.RawTap``)."""
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
                self.tap.remove(sub._id)
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
        parsed = parse_ack_subject(reply)
        if parsed is None:
            logger.warning("unexpected ack subject %r", reply)
            return None
        delivered, sseq, ts = parsed
        return _Delivery(RawRecord(sseq, subject, headers, data, ts), delivered, reply, self)


class JetStreamLog:
    """``EventLog`` on NATS JetStream.

    Create with ``await JetStreamLog.connect(url)`` (owns the connection) or
    ``JetStreamLog(nc)`` + ``await log.setup()`` (borrows one). Either way the connection parses
    message headers with ``jswire.parse_header_lines`` and the protocol with
    ``jsproto.ProtocolParser`` from then on (nats-py's results, at a fraction of the cost; set on
    that client instance only), and the log's own publishes go out through ``jspub.Outbox``.

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
            ≈ 2.2 ms each on a file stream and serialized per stream).
        replicas: replicas of the streams (and of the buckets beside them, ``kv.open_bucket``)
            that ``setup()`` creates (default 1; 3 on a three-node cluster). An existing stream
            keeps its own (``streams``).
        retry_for: how long a request that fails transiently (no responders, timeout, no
            leader: ``retry.is_transient``) is retried with backoff before
            ``retry.LogUnavailableError`` (default 20 s, about twice a leader election).
        fast_path: whether to bypass nats-py's per-message layers (its protocol and header
            parsers, ``Client.publish``, ``Msg`` objects: ``jsproto``, ``jswire``, ``jspub``,
            ``jsread``). ``None`` (default): on unless the environment variable
            ``JETLOOM_NATS_FASTPATH`` is ``0``/``false``/``no``/``off``. ``False`` runs everything
            through nats-py's public path, as happens on a nats-py without the attributes the
            bypasses rely on; same behaviour, more CPU per message.

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
        self.fast_path = fast_path_from_env() if fast_path is None else fast_path
        if self.fast_path:
            install_header_parser(nc)  # nats-py's own costs more than the rest of a read (jswire)
            install_protocol_parser(nc)  # no copy of the read buffer per message (jsproto)
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
        self._dg_inbox: str | None = None
        self._dg_waiters: dict[str, _Batch] = {}
        self._dg_ids = itertools.count()
        self.commit = commit
        self.atomic = commit == "batch"
        self._acks: AckInbox | None = None
        self.head_seq = 0  # the newest stream sequence this log has seen (acks, reads)
        self.outbox = Outbox(nc, enabled=self.fast_path)  # the hot path's publishes (jspub)
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
        request timeout: ``jsacks``)."""
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

    async def _dg_route(self, msg: Msg) -> None:
        batch = self._dg_waiters.get(msg.subject)
        if batch is not None:
            batch.add(msg)

    async def _direct_get(self, stream: str, request: dict[str, Any]) -> list[Msg]:
        """One batched direct get; returns the data messages (without the end-of-batch marker).
        The replies are gathered by the subscription's callback, not handed one by one to this
        task (a queue and a timeout per message were ≈ 10 µs each)."""
        if self._dg_inbox is None:
            self._dg_inbox = self.nc.new_inbox()
            await self.nc.subscribe(self._dg_inbox + ".*", cb=self._dg_route)
        reply = f"{self._dg_inbox}.{next(self._dg_ids)}"
        batch = self._dg_waiters[reply] = _Batch()
        try:
            await self.nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=reply)
            while True:
                seen = len(batch.msgs)
                try:
                    # the timeout runs from the last reply: a long batch is not cut short
                    async with asyncio.timeout(self.timeout):
                        await asyncio.shield(batch.done)
                    break
                except TimeoutError:
                    if len(batch.msgs) == seen:
                        raise
        finally:
            del self._dg_waiters[reply]
        status = batch.done.result()
        if status == "503":  # no responders: no replica serves direct gets now (an election)
            raise LogUnavailableError(f"direct get on {stream}: no responders")
        if status not in ("204", "404"):
            raise LogError(f"direct get on {stream} failed: status {status} {batch.headers}")
        return batch.msgs

    async def _scan(
        self, stream: str, subject_filter: str, after_seq: int, up_to_seq: int | None
    ) -> list[Msg]:
        out: list[Msg] = []
        start = after_seq + 1
        while True:
            # (the server honours up_to_seq only with multi_last, so the bound is applied here)
            req = {"seq": start, "next_by_subj": subject_filter, "batch": DIRECT_GET_BATCH}
            msgs = await self._direct_get(stream, req)
            for m in msgs:
                if up_to_seq is not None and int(m.headers["Nats-Sequence"]) > up_to_seq:  # type: ignore[index]
                    return out
                out.append(m)
            if len(msgs) < DIRECT_GET_BATCH:
                return out
            start = int(msgs[-1].headers["Nats-Sequence"]) + 1  # type: ignore[index]

    @staticmethod
    def _raw(msg: Msg) -> RawRecord:
        h = msg.headers or {}  # a fresh dict per message, ours to change
        seq = int(h.pop("Nats-Sequence"))
        subject = h.pop("Nats-Subject")
        ts = parse_rfc3339_ns(h.pop("Nats-Time-Stamp"))
        h.pop("Nats-Stream", None)
        h.pop("Nats-Num-Pending", None)
        h.pop("Nats-Last-Sequence", None)
        return RawRecord(seq, subject, h, msg.data, ts)

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
        # (NumPending) and look past the run's end, over every message block from there on. For
        # runs in the middle of a stream of 160,000 records of 20,000 runs that cost it 4-27 ms of
        # CPU per read, where the walk costs ≈ 0.1 ms per record (nats-server 2.15.1). Near the
        # stream's end the batch is cheap for the server and the walk's round trips cost the
        # client more (scenario (e) of ``benchmarks``: worker CPU per transition 752 → 1,019 µs
        # with 4 processes when every short read was walked).
        subject_filter = run_filter(self.prefix, workflow, run_id)
        tap = self._read_tap()
        if tap is None:  # a client whose messages cannot be tapped
            msgs = await self._scan(self.stream, subject_filter, after_seq, up_to_seq)
            return [self._raw(m) for m in msgs]
        out: list[RawRecord] = []
        old_part = up_to_seq is not None and self.head_seq - up_to_seq > WALK_DISTANCE
        if up_to_seq is not None and expect is not None and expect <= WALK_MAX and old_part:
            inbox = self._read_inbox(tap)
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
        self, subject_filter: str, tap: RawTap, after_seq: int, up_to_seq: int | None
    ) -> list[RawRecord]:
        # Direct gets, the first of FIRST_READ records; when its last one says more than
        # LONG_READ follow, the rest through a consumer made for this read (jsread: ≈ 4x less
        # server CPU and half the client's per record, for 1-3 ms to set up). Replies skip
        # nats-py's Msg path (jsread.RawTap).
        out: list[RawRecord] = []
        last, batch, consumer = after_seq, FIRST_READ, True
        while True:
            request = {"seq": last + 1, "next_by_subj": subject_filter, "batch": batch}
            got, pending = await direct_read(self.nc, self._read_inbox(tap), self.stream, request, self.timeout)
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

    def _read_tap(self) -> RawTap | None:
        """The connection's tap (made by the first read), or ``None`` if it cannot be tapped."""
        tap: RawTap | None = self.__dict__.get("_tap")
        if tap is None:
            tap = self.__dict__["_tap"] = RawTap(self.nc, enabled=self.fast_path)
        return tap if tap.usable else None

    def _read_inbox(self, tap: RawTap) -> ReadInbox:
        """The connection's shared inbox for direct-get replies (made by the first read)."""
        inbox: ReadInbox | None = self.__dict__.get("_inbox")
        if inbox is None:
            inbox = self.__dict__["_inbox"] = ReadInbox(self.nc, tap)
        return inbox

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
        # (``jsfollow.FollowHub``, which hands this follower only ``kinds``): registered first, so
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
        ``seq > after_seq``, in sequence order; one batched direct get per 1,000."""
        return await self._retry(
            f"scan of {subject_filter}", lambda: self._scan_records(subject_filter, after_seq, limit)
        )

    async def _scan_records(self, subject_filter: str, after_seq: int, limit: int) -> list[RawRecord]:
        out: list[RawRecord] = []
        start = after_seq + 1
        while len(out) < limit:
            want = min(limit - len(out), DIRECT_GET_BATCH)
            msgs = await self._direct_get(
                self.stream, {"seq": start, "next_by_subj": subject_filter, "batch": want}
            )
            out.extend(self._raw(m) for m in msgs)
            if len(msgs) < want:
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
            msgs = await self._direct_get(
                self.stream,
                {"multi_last": filters[i : i + MULTI_LAST_SUBJECTS], "batch": DIRECT_GET_BATCH},
            )
            out.extend(self._raw(m) for m in msgs)
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
        # one filter, ``LoadNextMsg``'s check stops at 64,000). With 300,000 finished runs kept,
        # (b) of ``benchmarks --retained-runs`` (4 rounds, twice, alternated with the step
        # consumers of both filters): server CPU per transition 139–203 → 99–149 µs, p99
        # 327–708 → 128–164 ms.
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
        msgs = await self._retry(
            "read of " + self.dlq_stream, lambda: self._scan(self.dlq_stream, f"{self.prefix}.dlq.>", 0, None)
        )
        out = []
        for m in msgs:
            h = m.headers or {}
            out.append(
                DeadLetter(
                    seq=int(h["Nats-Sequence"]),
                    subject=h["Nats-Subject"],
                    original_subject=h.get("Jl-Original-Subject", ""),
                    original_seq=int(h["Jl-Original-Seq"]) if "Jl-Original-Seq" in h else None,
                    reason=h.get("Jl-Reason", ""),
                    consumer=h.get("Jl-Consumer", ""),
                    data=m.data,
                )
            )
        return out
