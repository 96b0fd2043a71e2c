"""The ``EventLog`` port: everything the engine needs from a log, and nothing more.

Two implementations pass one contract suite (``tests/contract``): ``MemoryLog`` (in-process, for
tests and notebooks) and ``JetStreamLog`` (durable, shared by every process).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Hashable, Iterable, Sequence
from datetime import timedelta
from typing import Protocol

import msgspec

from engine.model.records import OutMessage, RawRecord

__all__ = [
    "AppendResult",
    "DeadLetter",
    "Delivery",
    "EventLog",
    "Followers",
    "RunRouter",
    "event_consumers",
    "hand_over",
]

logger = logging.getLogger("jetloom.log")


class AppendResult(msgspec.Struct, frozen=True):
    """Outcome of an append.

    Attributes:
        last_seq: sequence of the last message sent (for a duplicate, the sequence of the stored
            original; ``None`` when the log could not tell).
        count: messages stored by this append (0 for a duplicate).
        duplicate: nothing was stored because the idempotency ids had been stored before. When the
            append's first message (index 0) is a duplicate, nothing after it was sent.
        seqs: the sequence of each message sent, in order (for a duplicate, its original's, or 0
            when the log could not tell); empty when the log does not report them one by one
            (an atomic batch).
    """

    last_seq: int | None
    count: int
    duplicate: bool = False
    seqs: tuple[int, ...] = ()


class DeadLetter(msgspec.Struct, frozen=True):
    """A message moved aside because it could not be handled."""

    seq: int
    subject: str
    original_subject: str
    original_seq: int | None
    reason: str
    consumer: str
    data: bytes


def event_consumers(event_types: Sequence[str]) -> list[tuple[str | None, str]]:
    """A step's events consumers (``EventLog.ensure_consumer``) as ``(source, event type)``:
    ``source`` is ``consume``'s ``event_type`` argument for it, ``None`` for the step's main
    consumer, which delivers the first type in sorted order; each other type has its own."""
    return [(None if i == 0 else t, t) for i, t in enumerate(sorted(event_types))]


Sink = Callable[[RawRecord], None]


class Followers(dict[Hashable, dict[Sink, frozenset[str] | None]]):
    """The callback followers of runs (``EventLog.follow_callback``, and JetStream's follow hub):
    for each run's key, its sinks and the record kinds each wants (``None``: every kind)."""

    def add(self, key: Hashable, sink: Sink, kinds: Collection[str] | None = None) -> None:
        self.setdefault(key, {})[sink] = None if kinds is None else frozenset(kinds)

    def remove(self, key: Hashable, sink: Sink) -> None:
        """Forget ``sink`` as a follower of ``key`` (nothing when it is not one), and ``key``
        with its last follower."""
        sinks = self.get(key)
        if sinks is not None:
            sinks.pop(sink, None)
            if not sinks:
                del self[key]

    def takers(self, key: Hashable, kind: str) -> list[Sink]:
        """The sinks of ``key``'s followers that want a record of ``kind``."""
        sinks = self.get(key)
        if not sinks:
            return []
        return [sink for sink, kinds in sinks.items() if kinds is None or kind in kinds]


def hand_over(sinks: Iterable[Sink], rec: RawRecord) -> None:
    """Call each of ``sinks`` (``EventLog.follow_callback``) with ``rec``; an exception one
    raises is logged, and the others are still called (a log calls its sinks from its delivery
    path, which a follower's error must not stop)."""
    for sink in sinks:
        try:
            sink(rec)
        except Exception:
            logger.exception("a follower of %s failed on seq %d", rec.subject, rec.seq)


class Delivery(Protocol):
    """One delivery of a trigger event to a step's consumer.

    ``attempt`` is 1 for the first delivery and grows with every redelivery. Exactly one of
    ``ack``/``nak``/``term`` settles it; ``in_progress`` extends its deadline.
    """

    record: RawRecord
    attempt: int

    async def ack(self) -> None: ...

    async def nak(self, delay: timedelta | None = None) -> None: ...

    async def term(self) -> None: ...

    async def in_progress(self) -> None: ...


class RunRouter(Protocol):
    """Run affinity for one step's consumers in one process (``engine.runtime.affinity``): where
    a first delivery of a run should be handled.

    Attributes:
        instance: this process's instance id: where other processes hand deliveries over to it.
    """

    instance: str

    def route(self, run_id: str, subject: str) -> str | None:
        """``None``: handle the delivery of ``run_id`` (on ``subject``) here; else the instance id
        of the process it is handed over to."""
        ...


class EventLog(Protocol):
    """Append-only log of every run's records, with per-step consumers.

    Subjects and payloads are built by the engine (``engine.model.records``); the log stores, reads,
    follows and delivers them.
    """

    prefix: str
    atomic: bool
    """Whether an append is stored whole or not at all. When false, an append interrupted
    part-way (a crash, a lost connection) leaves a prefix of its messages stored, and the engine
    completes it later (``engine.wire.commit``)."""

    async def append(
        self,
        messages: Sequence[OutMessage],
        *,
        idempotency_key: str | None = None,
        indices: Sequence[int] | None = None,
        expected_last_seq: int | None = None,
    ) -> AppendResult:
        """Append ``messages`` (all of one run) in order.

        Order: the messages are stored in the order given; messages of other appends (other runs,
        or other writers of the same run) may be stored between them. An append that fails
        part-way leaves a prefix stored unless the log is ``atomic``.

        Idempotency: with an ``idempotency_key``, the message at index ``i`` of the commit is
        stored under the id ``message_id(key, i, execution)`` (the key itself for index 0, the
        message's ``Jl-Commit`` tag otherwise) and a message whose id was stored before is not
        stored again (JetStream: within the stream's duplicate window, 2 min by default). If the
        first message is a duplicate the result has ``duplicate=True`` and ``count=0``: the first
        message decides which writer's commit stands. The other messages may be sent at once with
        the first (``JetStreamLog``), so a second writer's may be stored; each names its
        execution in ``Jl-Commit`` and the fold leaves them out (``engine.wire.commit``). A log may
        instead stop at a duplicate first message (``MemoryLog``).

        Args:
            messages: what to append, in order.
            idempotency_key: the commit's key (default: none, no de-duplication).
            indices: the index of each message within its commit (default ``0..n-1``); used to
                re-append the missing messages of an interrupted commit under their original ids.
            expected_last_seq: store the first message only if the run's last record is at this
                sequence (default: no check). A writer that knows the run up to that sequence then
                knows there is nothing of the run between it and its own first message.

        Raises:
            LastSeqMismatchError: ``expected_last_seq`` was given and the run has records after
                it; nothing was stored (the check comes before de-duplication).
            AppendError: the log rejected a message (the messages before it may be stored).
            CommitTooLargeError: the append exceeds a limit of the log; nothing was stored.
        """
        ...

    def predecessor(self, record: RawRecord) -> int | None:
        """The sequence of the run's record right before ``record``, when the record itself shows
        it: it was appended with ``expected_last_seq`` (and so stored only if the run ended
        there). ``None`` for a record appended without that check. A reader holding the run up to
        that sequence can take ``record`` as the next one without reading the log.

        On JetStream the check travels with the stored message (its
        ``Nats-Expected-Last-Subject-Sequence`` headers), so the answer holds on the stream the
        record was appended to (not on a stream that sources it under other sequences)."""
        ...

    async def read(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        expect: int | None = None,
    ) -> list[RawRecord]:
        """The run's records with ``after_seq < seq <= up_to_seq``, in order. ``expect``: how many
        records the caller believes that is (a hint; the result does not depend on it)."""
        ...

    def follow(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        kinds: Collection[str] | None = None,
    ) -> AsyncIterator[RawRecord]:
        """The run's records after ``after_seq``: the stored ones, then new ones as they land.
        Never ends by itself; the caller stops iterating.

        ``kinds``: only records of these kinds (the subject's kind token: ``evt``, ``sys``,
        ``out``, ``cmd``, ``sch``); ``None`` (the default): all. On JetStream a follow of one
        kind takes a consumer of that kind only; with several kinds the others still reach the
        process (the follow consumer has one filter subject, see ``jsfollow``) and are dropped
        before their headers are parsed. (A run with no records yet is followed by
        ``follow_callback``, which reads nothing stored.)"""
        ...

    async def follow_callback(
        self,
        workflow: str,
        run_id: str,
        sink: Callable[[RawRecord], None],
        *,
        kinds: Collection[str] | None = None,
    ) -> Callable[[], None]:
        """Hand ``sink`` every record of the run stored from now on (of ``kinds``, as in
        ``follow``), in log order, as the log takes it in: a call per record from the log's own
        delivery path, with no queue, generator or task between (for a follower that only folds
        records, such as a handler awaiting its run's end). Nothing stored is read: set it up
        before the run's first record is appended (a start under a new run id); otherwise use
        ``follow``. ``sink`` must not block; an exception it raises is logged and the follow goes
        on. Returns once the follow is set up: the function that ends it (safe to call twice)."""
        ...

    async def follow_type(
        self, workflow: str, kind: str, type_name: str, sink: Callable[[RawRecord], None]
    ) -> Callable[[], None]:
        """Hand ``sink`` every record of ``<kind>.<type_name>`` of every run of ``workflow``
        stored from now on, from the log's delivery path (as ``follow_callback``), including
        records a message schedule stores when it fires (which a core subscription never sees):
        how a worker learns that a run ended from outside (a cancel, a run timeout). ``sink``
        must not block. Returns once the follow is set up: the function that ends it."""
        ...

    async def ensure_consumer(
        self, workflow: str, step: str, event_types: Sequence[str], *, update: bool = True
    ) -> None:
        """Create the durable consumers of ``step``, shared by all replicas: one per event type
        in ``event_types`` (every event of that type of every run of ``workflow``, from the
        start of the log; the first type in sorted order is the step's main consumer, the others
        are ``consume(event_type=...)``) and its commands (every ``cmd.<step>`` record: the
        resumes of its waits). An existing consumer is updated to this configuration, unless
        ``update`` is false (clients that only need it to exist leave the workers' settings
        alone).

        One consumer per type and one for commands, not one with every filter: on JetStream a
        consumer with several filter subjects costs the server a walk of the stream's per-subject
        index at every message-block roll (``JetStreamLog.ensure_consumer``)."""
        ...

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
    ) -> AsyncIterator[Delivery]:
        """Deliveries of one of ``step``'s consumers, at most ``max_in_flight`` unsettled at a
        time: its main consumer (the first of its event types, in sorted order), or with
        ``event_type`` the consumer of that other type, or with ``commands`` its commands.

        ``dispatch``: a log may hand deliveries to this function (which must not block; it
        typically starts a task) as they arrive, instead of yielding them: on JetStream straight
        from the connection's read loop, one turn of the event loop sooner than through the
        iterator. Every delivery reaches the caller one way or the other, once.

        ``router``: run affinity (default ``None``: every delivery is handled here). A log that
        can hand a delivery to another process asks it for each first delivery (attempt 1) that
        is not part of a fan-out, and hands the delivery to the owner it names, unsettled; the
        owner settles it, and a redelivery is handled wherever it lands. The iterator also
        yields (or dispatches) what other processes hand to ``router.instance`` for this
        consumer. A log that cannot (``MemoryLog``: one process) ignores it."""
        ...

    async def schedule(
        self, message: OutMessage, *, at_ns: int, name: str, idempotency_key: str
    ) -> None:
        """A durable timer: append ``message`` at ``at_ns`` (ns since the epoch; at once if past).

        On JetStream this is a message schedule (server 2.12+): the pending timer is a record of
        the run on ``<run>.sch.<name>`` until the server fires it, so it survives restarts of every
        process and of the server. ``MemoryLog`` keeps it in the event loop. Scheduling the same
        ``idempotency_key`` twice schedules once.
        """
        ...

    async def unschedule(self, workflow: str, run_id: str, name: str) -> None:
        """Remove the run's pending timer ``name`` (set with ``schedule``) so it never fires.
        Nothing happens when it has fired already or was never set; idempotent.

        On JetStream this purges the schedule's subject ``<run>.sch.<name>`` (the server drops
        the timer with the message: one API request). ``MemoryLog`` cancels its callback.

        Raises:
            LogError: the log refused (e.g. a stream configured with ``deny_purge``).
        """
        ...

    async def dead_letter(
        self, record: RawRecord, *, reason: str, consumer: str
    ) -> None:
        """Move ``record`` to the dead-letter subject with ``reason``."""
        ...

    async def dead_letters(self) -> list[DeadLetter]:
        """Every dead-lettered message, oldest first."""
        ...

    async def close(self) -> None: ...
