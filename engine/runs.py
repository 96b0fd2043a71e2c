"""``RunCache``: folded runs a process keeps in memory and rolls forward from the log.

A worker handling a trigger needs the run's records up to the trigger (for the step's view) and any
records after it (to see that the trigger was already handled, or that the run ended). The cache
reads only what it has not seen, so a run's log is read once per process, not once per step.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from .codec import decode_record
from .events import Event
from .fold import RunState, fold
from .log.base import EventLog
from .records import OutMessage, RawRecord, Record

__all__ = ["CachedRun", "RunCache"]

EVICT_SCAN = 64  # oldest cached runs looked at for a finished one to evict


class CachedRun:
    """One run's decoded records and their fold.

    The records are always a prefix of the run's log, without holes: everything of the run up to
    ``last_seq``. They come from reads, and from the worker's own commits when it can prove there
    is no hole (``advance_own``).

    Attributes:
        contended: another writer appended to this run while this process held it (an
            ``expected_last_seq`` check failed); its commits are then made without the check, and
            its cache moves forward by reads only.
        version_checked: the workflow class was checked against the run's log
            (``engine.replay.check``) when this process first loaded it.
    """

    __slots__ = ("records", "state", "lock", "guard", "_events_by_seq", "contended", "version_checked")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.state = RunState()
        self.lock = asyncio.Lock()  # one log read at a time per run
        # Plain-def steps call collect() from worker threads while the loop folds new records in.
        self.guard = threading.Lock()
        self._events_by_seq: dict[int, Record] = {}
        self.contended = False
        self.version_checked = False

    @property
    def last_seq(self) -> int:
        return self.state.seq

    def extend(self, records: Sequence[Record]) -> None:
        with self.guard:
            self._extend(records)

    def _extend(self, records: Sequence[Record]) -> None:
        for rec in records:
            if rec.seq <= self.state.seq:
                continue
            self.records.append(rec)
            if rec.kind == "evt" and rec.error is None:
                self._events_by_seq[rec.seq] = rec
            self.state.apply(rec)

    def advance_own(
        self,
        expected_last_seq: int,
        seqs: Sequence[int],
        messages: Sequence[OutMessage],
        events: Mapping[str, type[Event]],
    ) -> int:
        """Fold in this process's own commit without reading it back.

        ``messages`` were appended at ``seqs`` (stream-wide sequences from the acks), the first of them
        with the check that the run's last record was at ``expected_last_seq``. So nothing of the
        run lies between ``expected_last_seq`` and ``seqs[0]``, and nothing lies between two
        messages whose sequences are consecutive. Records are applied while that holds and the
        cache still ends at ``expected_last_seq``; the rest is left to the next read. Their
        ``time_ns`` is 0 (an ack does not carry the server's timestamp). Returns how many were
        applied.
        """
        with self.guard:
            if self.state.seq != expected_last_seq or not seqs:
                return 0
            batch: list[Record] = []
            prev = expected_last_seq
            for i, (seq, m) in enumerate(zip(seqs, messages, strict=False)):
                if seq <= prev or (i and seq != prev + 1):
                    break
                rec = RawRecord(seq, m.subject, m.headers, m.data, 0)
                batch.append(decode_record(rec, events))
                prev = seq
            self._extend(batch)
            return len(batch)

    def state_at(self, seq: int) -> dict[str, Any]:
        """The user state as of ``seq`` (shared; callers must not mutate it)."""
        if seq >= self.state.state_changed_seq:
            return self.state.state
        return fold(self.records, until_seq=seq).state

    def event(self, seq: int) -> Event | None:
        rec = self._events_by_seq.get(seq)
        return rec.body if rec is not None else None

    def collect(
        self, step: str, expected: Sequence[str], trigger_seq: int
    ) -> tuple[list[int], list[Any]] | None:
        with self.guard:
            seqs = self.state.collect(step, expected, trigger_seq)
            if seqs is None:
                return None
            return seqs, [self._events_by_seq[s].body for s in seqs]


class RunCache:
    """An LRU of ``CachedRun`` for one workflow.

    Args:
        log: where records are read from.
        workflow: the workflow name.
        events: event registry used to decode ``evt``/``out`` payloads.
        max_runs: runs kept (default 1024); finished runs are dropped first.
    """

    def __init__(
        self,
        log: EventLog,
        workflow: str,
        events: Mapping[str, type[Event]],
        *,
        max_runs: int = 1024,
    ) -> None:
        self._log = log
        self._workflow = workflow
        self._events = events
        self._max = max_runs
        self._runs: OrderedDict[str, CachedRun] = OrderedDict()

    async def get(
        self, run_id: str, *, min_seq: int, refresh: bool = False, trigger: Record | None = None
    ) -> CachedRun:
        """The run with at least every record up to ``min_seq``; with ``refresh``, up to the
        current end of its log. ``trigger``, a record the caller has decoded already, is used as
        is when the read returns it (a trigger is not decoded twice)."""
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = CachedRun()
            self._evict()
        else:
            self._runs.move_to_end(run_id)
        if run.last_seq < min_seq or refresh:
            async with run.lock:
                if run.last_seq < min_seq or refresh:
                    raws = await self._log.read(self._workflow, run_id, after_seq=run.last_seq)
                    known = trigger.seq if trigger is not None else -1
                    run.extend(
                        [
                            trigger if r.seq == known else decode_record(r, self._events)  # type: ignore[misc]
                            for r in raws
                        ]
                    )
        return run

    def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def _evict(self) -> None:
        while len(self._runs) > self._max:
            # Prefer a finished run among the oldest few (bounded: a full scan per new run made
            # eviction the worker's top cost at 100+ runs in flight).
            oldest = itertools.islice(self._runs.items(), EVICT_SCAN)
            victim = next((k for k, v in oldest if v.state.terminal), next(iter(self._runs)))
            del self._runs[victim]
