"""``MemoryLog``: the in-process event log (tests, notebooks, ``Workflow.run()`` by default).

It keeps the JetStream log's semantics that the engine relies on — ordered appends with
per-message idempotency ids, stream-wide sequences, durable per-step consumers that deliver from
the start, redelivery on nak — so one contract suite covers both. Like the pipelined JetStream log it
does not claim atomic appends (``atomic = False``), so the engine's commits carry the copy that
completes an interrupted one, and the in-process tests exercise that path too.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import timedelta

from engine.model.errors import LastSeqMismatchError
from engine.model.records import OutMessage, RawRecord
from engine.ports.log import (
    AppendResult,
    DeadLetter,
    Delivery,
    Followers,
    RunRouter,
    event_consumers,
    hand_over,
)
from engine.wire.headers import execution_of, message_id
from engine.wire.subjects import DEFAULT_PREFIX, SubjectParts, parse_subject

__all__ = ["MemoryLog"]


class _Delivery:
    __slots__ = ("record", "attempt", "_consumer", "_settled")

    def __init__(self, record: RawRecord, attempt: int, consumer: _Consumer) -> None:
        self.record = record
        self.attempt = attempt
        self._consumer = consumer
        self._settled = False

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        self._consumer.in_flight -= 1
        self._consumer.wake.set()
        return True

    async def ack(self) -> None:
        self._settle()

    async def term(self) -> None:
        self._settle()

    async def in_progress(self) -> None:
        pass

    async def nak(self, delay: timedelta | None = None) -> None:
        if not self._settle():
            return
        seconds = delay.total_seconds() if delay else 0.0
        consumer, rec, attempt = self._consumer, self.record, self.attempt + 1

        def redeliver() -> None:
            consumer.queue.append((rec, attempt))
            consumer.wake.set()

        asyncio.get_running_loop().call_later(seconds, redeliver)


class _Consumer:
    def __init__(self, step: str, types: frozenset[str], commands: bool = False) -> None:
        self.step = step
        self.types = types
        self.commands = commands  # the step's commands consumer (``cmd.<step>``), else its events
        self.queue: deque[tuple[RawRecord, int]] = deque()
        self.wake = asyncio.Event()
        self.in_flight = 0


def _delivers(consumer: _Consumer, parts: SubjectParts) -> bool:
    if consumer.commands:
        return parts.kind == "cmd" and parts.type == consumer.step
    return parts.kind == "evt" and parts.type in consumer.types


class MemoryLog:
    """An in-memory ``EventLog``.

    Args:
        prefix: subject prefix (default ``"jetloom"``).
    """

    atomic = False

    def __init__(self, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._seq = 0
        self._scheduled: set[str] = set()  # idempotency keys of timers set
        self._timers: set[asyncio.Future[AppendResult]] = set()
        self._pending: dict[tuple[str, str, str], asyncio.TimerHandle] = {}  # (workflow, run, name)
        self._runs: dict[tuple[str, str], list[RawRecord]] = {}
        self._ids: dict[str, int] = {}  # idempotency id -> sequence it was stored at
        self._checked: dict[int, int] = {}  # sequence -> the run's last sequence it was appended after
        # (workflow, step, commands, event type of its own consumer: None for the step's first)
        self._consumers: dict[tuple[str, str, bool, str | None], _Consumer] = {}
        self._by_workflow: dict[str, list[RawRecord]] = {}
        self._all: list[RawRecord] = []  # every run record, in sequence order (scans)
        self._dead: list[DeadLetter] = []
        self._appended = asyncio.Condition()
        self._sinks = Followers()  # (workflow, run id) -> the sinks following the run by callback
        self._typed = Followers()  # (workflow, kind.type) -> sinks of that record type of every run

    def predecessor(self, record: RawRecord) -> int | None:
        return self._checked.get(record.seq)

    async def append(
        self,
        messages: Sequence[OutMessage],
        *,
        idempotency_key: str | None = None,
        indices: Sequence[int] | None = None,
        expected_last_seq: int | None = None,
    ) -> AppendResult:
        parsed = []
        for m in messages:
            parts = parse_subject(m.subject)
            if parts is None or not m.subject.startswith(self.prefix + ".run."):
                raise ValueError(f"not a run subject of this log: {m.subject!r}")
            parsed.append(parts)
        positions = list(indices) if indices is not None else list(range(len(messages)))
        if expected_last_seq is not None and parsed:
            run = self._runs.get((parsed[0].workflow, parsed[0].run_id))
            last = run[-1].seq if run else 0
            if last != expected_last_seq:
                raise LastSeqMismatchError(f"wrong last sequence: {last}", code=10071)
        now = time.time_ns()
        seqs: list[int] = []
        count = 0
        for n, (m, parts, index) in enumerate(zip(messages, parsed, positions, strict=True)):
            msg_id = (
                message_id(idempotency_key, index, execution_of(m.headers))
                if idempotency_key is not None
                else None
            )
            if msg_id is not None and msg_id in self._ids:
                seqs.append(self._ids[msg_id])
                if index == 0:
                    return AppendResult(seqs[0], 0, duplicate=True, seqs=tuple(seqs))
                continue
            self._seq += 1
            count += 1
            seqs.append(self._seq)
            if msg_id is not None:
                self._ids[msg_id] = self._seq
            rec = RawRecord(self._seq, m.subject, dict(m.headers), m.data, now)
            if expected_last_seq is not None and n == 0:
                self._checked[self._seq] = expected_last_seq
            self._runs.setdefault((parts.workflow, parts.run_id), []).append(rec)
            if self._sinks:
                hand_over(self._sinks.takers((parts.workflow, parts.run_id), parts.kind), rec)
            if self._typed:
                hand_over(self._typed.takers((parts.workflow, f"{parts.kind}.{parts.type}"), parts.kind), rec)
            self._by_workflow.setdefault(parts.workflow, []).append(rec)
            self._all.append(rec)
            if parts.kind in ("evt", "cmd"):
                for (wf, _, _, _), consumer in self._consumers.items():
                    if wf == parts.workflow and _delivers(consumer, parts):
                        consumer.queue.append((rec, 1))
                        consumer.wake.set()
        if count:
            async with self._appended:
                self._appended.notify_all()
        return AppendResult(
            seqs[-1] if seqs else None, count, duplicate=bool(seqs) and not count, seqs=tuple(seqs)
        )

    async def read(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        expect: int | None = None,
    ) -> list[RawRecord]:
        records = self._runs.get((workflow, run_id), [])
        return [
            r for r in records if r.seq > after_seq and (up_to_seq is None or r.seq <= up_to_seq)
        ]

    async def follow(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        kinds: Collection[str] | None = None,
    ) -> AsyncIterator[RawRecord]:
        last = after_seq
        while True:
            async with self._appended:
                batch = await self.read(workflow, run_id, after_seq=last)
                if not batch:
                    await self._appended.wait()
                    continue
            for rec in batch:
                last = rec.seq
                if kinds is None or rec.subject.rsplit(".", 2)[1] in kinds:
                    yield rec

    async def follow_callback(
        self,
        workflow: str,
        run_id: str,
        sink: Callable[[RawRecord], None],
        *,
        kinds: Collection[str] | None = None,
    ) -> Callable[[], None]:
        key = (workflow, run_id)
        self._sinks.add(key, sink, kinds)
        return lambda: self._sinks.remove(key, sink)

    async def follow_type(
        self, workflow: str, kind: str, type_name: str, sink: Callable[[RawRecord], None]
    ) -> Callable[[], None]:
        key = (workflow, f"{kind}.{type_name}")
        self._typed.add(key, sink)
        return lambda: self._typed.remove(key, sink)

    async def ensure_consumer(
        self, workflow: str, step: str, event_types: Sequence[str], *, update: bool = True
    ) -> None:
        wanted = [(source, frozenset([t]), False) for source, t in event_consumers(event_types)]
        wanted.append((None, frozenset(), True))
        for event_type, accepted, commands in wanted:
            key = (workflow, step, commands, event_type)
            existing = self._consumers.get(key)
            if existing is not None:
                if update:
                    existing.types = accepted
                continue
            consumer = self._consumers[key] = _Consumer(step, accepted, commands)
            for rec in self._by_workflow.get(workflow, []):
                parts = parse_subject(rec.subject)
                if parts is not None and _delivers(consumer, parts):
                    consumer.queue.append((rec, 1))

    async def consume(
        self,
        workflow: str,
        step: str,
        *,
        max_in_flight: int,
        commands: bool = False,
        event_type: str | None = None,
        dispatch: Callable[[Delivery], None] | None = None,
        router: RunRouter | None = None,
    ) -> AsyncIterator[_Delivery]:
        # (``dispatch`` is not used: every delivery is yielded; ``router`` neither: one process)
        consumer = self._consumers[(workflow, step, commands, None if commands else event_type)]
        while True:
            if consumer.queue and consumer.in_flight < max_in_flight:
                rec, attempt = consumer.queue.popleft()
                consumer.in_flight += 1
                yield _Delivery(rec, attempt, consumer)
                continue
            consumer.wake.clear()
            await consumer.wake.wait()

    async def schedule(
        self, message: OutMessage, *, at_ns: int, name: str, idempotency_key: str
    ) -> None:
        if idempotency_key in self._scheduled:
            return
        self._scheduled.add(idempotency_key)
        delay = max(0.0, (at_ns - time.time_ns()) / 1e9)
        parts = parse_subject(message.subject)
        pending = (parts.workflow, parts.run_id, name) if parts is not None else None

        def fire() -> None:
            if pending is not None:
                self._pending.pop(pending, None)
            task = asyncio.ensure_future(self.append([message], idempotency_key=idempotency_key))
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        if pending is not None:
            self._pending[pending] = handle

    async def unschedule(self, workflow: str, run_id: str, name: str) -> None:
        handle = self._pending.pop((workflow, run_id, name), None)
        if handle is not None:
            handle.cancel()

    async def dead_letter(self, record: RawRecord, *, reason: str, consumer: str) -> None:
        self._seq += 1
        parts = parse_subject(record.subject)
        wf = parts.workflow if parts else "unknown"
        self._dead.append(
            DeadLetter(
                seq=self._seq,
                subject=f"{self.prefix}.dlq.{wf}.{consumer}",
                original_subject=record.subject,
                original_seq=record.seq,
                reason=reason,
                consumer=consumer,
                data=record.data,
            )
        )

    async def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead)

    # ---- queries across runs (``engine.ports.runindex.SubjectScan``) --------------------------

    async def scan(self, subject_filter: str, *, after_seq: int = 0, limit: int = 1000) -> list[RawRecord]:
        """Up to ``limit`` records matching ``subject_filter`` (wildcards ``*`` and ``>``) with
        ``seq > after_seq``, in sequence order."""
        pattern = subject_filter.split(".")
        start = bisect.bisect_right(self._all, after_seq, key=lambda r: r.seq)
        out: list[RawRecord] = []
        for rec in itertools.islice(self._all, start, None):
            if len(out) >= limit:
                break
            if _matches(pattern, rec.subject):
                out.append(rec)
        return out

    async def last_per_subject(self, subject_filters: Sequence[str]) -> list[RawRecord]:
        """The last record of every subject matching any of ``subject_filters``, in sequence
        order."""
        # filters whose first four tokens (prefix.run.<workflow>.<run>) are literal are looked up
        # by them: a listing asks for several subjects of each of many runs
        by_run: dict[tuple[str, ...], list[list[str]]] = {}
        general: list[list[str]] = []
        for f in subject_filters:
            pattern = f.split(".")
            head = tuple(pattern[:4])
            if len(pattern) > 4 and "*" not in head and ">" not in head:
                by_run.setdefault(head, []).append(pattern)
            else:
                general.append(pattern)
        last: dict[str, RawRecord] = {}
        for rec in self._all:
            near = by_run.get(tuple(rec.subject.split(".", 4)[:4]), ())
            if any(_matches(p, rec.subject) for p in near) or any(_matches(p, rec.subject) for p in general):
                last[rec.subject] = rec
        return sorted(last.values(), key=lambda r: r.seq)

    async def last_seq(self) -> int:
        """The log's last sequence (0 while empty)."""
        return self._all[-1].seq if self._all else 0

    async def close(self) -> None:
        pass


def _matches(pattern: list[str], subject: str) -> bool:
    """Whether ``subject`` matches a NATS subject filter split into tokens (``*``: one token,
    ``>``: one or more at the end)."""
    tokens = subject.split(".")
    for i, want in enumerate(pattern):
        if want == ">":
            return len(tokens) > i
        if i >= len(tokens) or (want != "*" and want != tokens[i]):
            return False
    return len(tokens) == len(pattern)

