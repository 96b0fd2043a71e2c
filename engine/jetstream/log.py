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

``JetStreamLog`` is the ``EventLog`` facade over one collaborator per concern, each in its own
module: ``streams.ensure_log_streams`` (set-up), ``appender.Appender`` (appends),
``reader.Reader`` (reads and scans), ``follow.Follows`` (follow hubs and watches),
``consumers.StepConsumers`` (step consumers: set-up and ``pull.PullLoop``), ``timers.Timers``
and ``deadletters.DeadLetters``.

On a connection that passes the gate of ``_natspy`` (the fast path, ``JetStreamLog.fast_path``),
messages skip nats-py's per-message layers: its protocol and header parsers, ``Client.publish``
and ``Msg`` objects. Otherwise everything takes nats-py's public API; the behaviour is the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import timedelta
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import StorageType

from engine.jetstream._natspy import FAST_PATH_ENV, Tap, fast_path_from_env, tap
from engine.jetstream.appender import Appender
from engine.jetstream.connection import DEFAULT_URL, NatsSettings, open_connection
from engine.jetstream.consumers import (
    DEFAULT_ACK_WAIT,
    DEFAULT_PROGRESS_HEARTBEAT,
    StepConsumers,
    check_lease,
    commands_consumer_name,
    consumer_name,
)
from engine.jetstream.deadletters import DeadLetters
from engine.jetstream.follow import Follows
from engine.jetstream.pub import Outbox
from engine.jetstream.pull import PullDelivery
from engine.jetstream.read import StreamHead
from engine.jetstream.reader import DIRECT_GET_BATCH, Reader
from engine.jetstream.retry import DEFAULT_RETRY_FOR
from engine.jetstream.streams import ensure_log_streams, stream_info
from engine.jetstream.timers import Timers
from engine.model.durations import seconds
from engine.model.records import OutMessage, RawRecord
from engine.ports.log import AppendResult, DeadLetter, Delivery, RunRouter
from engine.wire.subjects import DEFAULT_PREFIX

__all__ = [
    "DEFAULT_ACK_WAIT",
    "DEFAULT_PROGRESS_HEARTBEAT",
    "FAST_PATH_ENV",
    "JetStreamLog",
    "check_lease",
    "commands_consumer_name",
    "consumer_name",
]


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
        self.commit = commit
        self.atomic = commit == "batch"
        self.outbox = Outbox(nc, enabled=self.fast_path)  # the hot path's publishes (pub)
        self._head = StreamHead()  # the newest stream sequence this log has seen (acks, reads)
        where = {"stream": self.stream, "prefix": prefix}
        self.appender = Appender(
            nc, **where, atomic=self.atomic, timeout=request_timeout, retry_for=self.retry_for,
            tap=self.tap, outbox=self.outbox, head=self._head,
        )  # fmt: skip
        self.reader = Reader(nc, **where, timeout=request_timeout, retry_for=self.retry_for, tap=self.tap, head=self._head)
        self.follows = Follows(
            nc, stream=self.stream, prefix=prefix, timeout=request_timeout, tap=self.tap, reader=self.reader
        )
        self.consumers = StepConsumers(
            nc, self.js, **where, ack_wait=self.ack_wait, progress_heartbeat=self.progress_heartbeat,
            prefetch=prefetch, retry_for=self.retry_for, tap=self.tap, outbox=self.outbox,
        )  # fmt: skip
        self.timers = Timers(nc, self.js, **where, timeout=request_timeout, retry_for=self.retry_for)
        self.dead_letter_store = DeadLetters(
            self.js, dlq_stream=self.dlq_stream, prefix=prefix, retry_for=self.retry_for, reader=self.reader
        )
        self._hubs = self.follows.hubs  # (workflow, kind or every kind) -> its follow hub

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
        await ensure_log_streams(
            self.nc,
            prefix=self.prefix,
            stream=self.stream,
            dlq_stream=self.dlq_stream,
            storage="file" if self.storage == StorageType.FILE else "memory",
            replicas=self.replicas,
            duplicate_window=self.duplicate_window,
            timeout=self.timeout,
            retry_for=self.retry_for,
        )

    async def close(self) -> None:
        await self.consumers.close_handoffs()
        await self.appender.close()
        await self.follows.close()
        if self._owns and not self.nc.is_closed:
            await self.nc.drain()

    @property
    def head_seq(self) -> int:
        """The newest stream sequence this log has seen (its appends' acks, its reads)."""
        return self._head.seq

    @head_seq.setter
    def head_seq(self, seq: int) -> None:
        self._head.seq = seq

    def _read_tap(self) -> Tap | None:
        """The connection's fast path (``self.tap``), or ``None`` on nats-py's public API."""
        return self.tap

    # ---- append (appender.Appender) ----------------------------------------------------------

    async def append(
        self,
        messages: Sequence[OutMessage],
        *,
        idempotency_key: str | None = None,
        indices: Sequence[int] | None = None,
        expected_last_seq: int | None = None,
    ) -> AppendResult:
        return await self.appender.append(
            messages, idempotency_key=idempotency_key, indices=indices, expected_last_seq=expected_last_seq
        )

    def predecessor(self, record: RawRecord) -> int | None:
        return self.appender.predecessor(record)

    # ---- read (reader.Reader) ----------------------------------------------------------------

    async def read(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        expect: int | None = None,
    ) -> list[RawRecord]:
        return await self.reader.read(workflow, run_id, after_seq=after_seq, up_to_seq=up_to_seq, expect=expect)

    async def scan(
        self, subject_filter: str, *, after_seq: int = 0, limit: int = DIRECT_GET_BATCH
    ) -> list[RawRecord]:
        """Up to ``limit`` records matching ``subject_filter`` (wildcards allowed) with
        ``seq > after_seq``, in sequence order; one batched direct get per 1,000."""
        return await self.reader.scan(subject_filter, after_seq=after_seq, limit=limit)

    async def last_per_subject(self, subject_filters: Sequence[str]) -> list[RawRecord]:
        """The last record of every subject matching any of ``subject_filters`` (a batched
        ``multi_last`` direct get), in sequence order."""
        return await self.reader.last_per_subject(subject_filters)

    async def last_seq(self) -> int:
        """The stream's last sequence (0 while empty), from its info (``$JS.API.STREAM.INFO``:
        a constant cost, where a ``last_by_subj`` direct get with wildcards costs the server a
        walk over every subject matching it)."""
        info = await stream_info(self.nc, self.stream, timeout=self.timeout, retry_for=self.retry_for)
        return int(((info or {}).get("state") or {}).get("last_seq") or 0)

    # ---- follow (follow.Follows) -------------------------------------------------------------


    def follow(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        kinds: Collection[str] | None = None,
    ) -> AsyncIterator[RawRecord]:
        return self.follows.follow(workflow, run_id, after_seq=after_seq, kinds=kinds)

    async def follow_callback(
        self,
        workflow: str,
        run_id: str,
        sink: Callable[[RawRecord], None],
        *,
        kinds: Collection[str] | None = None,
    ) -> Callable[[], None]:
        return await self.follows.follow_callback(workflow, run_id, sink, kinds=kinds)

    async def follow_type(
        self, workflow: str, kind: str, type_name: str, sink: Callable[[RawRecord], None]
    ) -> Callable[[], None]:
        return await self.follows.follow_type(workflow, kind, type_name, sink)

    # ---- step consumers (consumers.StepConsumers) --------------------------------------------

    async def ensure_consumer(
        self, workflow: str, step: str, event_types: Sequence[str], *, update: bool = True
    ) -> None:
        await self.consumers.ensure(workflow, step, event_types, update=update)

    async def backlog(self, workflow: str, step: str, event_types: Sequence[str]) -> list[tuple[str, int, int]]:
        """``(consumer, pending, ack pending)`` of a step's consumers (``StepConsumers.backlog``;
        for metrics: not part of the ``EventLog`` port)."""
        return await self.consumers.backlog(workflow, step, event_types)

    def consume(
        self,
        workflow: str,
        step: str,
        *,
        max_in_flight: int,
        commands: bool = False,
        event_type: str | None = None,
        dispatch: Callable[[Delivery], None] | None = None,
        router: RunRouter | None = None,
    ) -> AsyncIterator[PullDelivery]:
        return self.consumers.consume(
            workflow,
            step,
            max_in_flight=max_in_flight,
            commands=commands,
            event_type=event_type,
            dispatch=dispatch,
            router=router,
        )

    async def open_handoffs(self, instance: str) -> None:
        """Subscribe the hand-off inbox of process ``instance`` (run affinity;
        ``StepConsumers.open_handoffs``) before it names itself a member in the registry; a
        ``consume`` with a router opens it too."""
        await self.consumers.open_handoffs(instance)

    # ---- timers (timers.Timers) and dead letters (deadletters.DeadLetters) -------------------

    async def schedule(self, message: OutMessage, *, at_ns: int, name: str, idempotency_key: str) -> None:
        await self.timers.schedule(message, at_ns=at_ns, name=name, idempotency_key=idempotency_key)

    async def unschedule(self, workflow: str, run_id: str, name: str) -> None:
        await self.timers.unschedule(workflow, run_id, name)

    async def dead_letter(self, record: RawRecord, *, reason: str, consumer: str) -> None:
        await self.dead_letter_store.dead_letter(record, reason=reason, consumer=consumer)

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.dead_letter_store.dead_letters()
