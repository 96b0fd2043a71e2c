"""``RunCache``: folded runs a process keeps in memory and rolls forward from the log.

A worker handling a trigger needs the run's records up to the trigger (for the step's view) and any
records after it (to see that the trigger was already handled, or that the run ended). The cache
reads only what it has not seen, so a run's log is read once per process, not once per step.

With a ``SnapshotStore``, a run the cache does not hold starts from its latest snapshot and reads
only the records after it; the cache writes a new snapshot each time a run has folded another
``snapshot_every`` records. What a snapshot leaves out (records before it, for a step's view of the
state as of an older trigger, or an older event's body) raises ``HistoryNeeded``; the executor then
reloads the run from its whole log and runs the step again (nothing was committed yet).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from engine.model.events import Event
from engine.model.records import OutMessage, RawRecord, Record
from engine.ports.log import EventLog
from engine.ports.snapshots import SnapshotStore
from engine.runtime.commands import run_started, start_event_message, start_key
from engine.state.fold import HistoryNeeded, RunState, fold
from engine.state.snapshots import (
    DEFAULT_SNAPSHOT_EVERY,
    decode_snapshot,
    encode_snapshot,
)
from engine.wire.codec import decode_record
from engine.wire.headers import H_NEW_RUN, commit_tag, parse_commit_tag

__all__ = ["CachedRun", "RunCache"]

logger = logging.getLogger("jetloom.runs")


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
            (``engine.runtime.replay.check``) when this process first loaded it.
    """

    __slots__ = (
        "records", "state", "lock", "guard", "_events_by_seq", "contended", "version_checked",
        "base", "base_seq", "snapshot_records",
    )  # fmt: skip

    def __init__(self, snapshot: bytes | None = None, state: RunState | None = None) -> None:
        self.records: list[Record] = []
        self.state = state if state is not None else RunState()
        # the snapshot the records continue from (None: they start at the run's first record)
        self.base = snapshot if state is not None else None
        self.base_seq = self.state.seq
        self.snapshot_records = self.state.records  # records folded when last snapshotted
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
            if self.base is not None and rec.kind == "sys" and rec.type == "RolledBack":
                # a rollback refolds the records before it, which a snapshot does not hold
                raise HistoryNeeded(self.state.run_id, "a rollback")
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
        """The user state as of ``seq`` (shared; callers must not mutate it).

        Raises:
            HistoryNeeded: the run was loaded from a snapshot taken after ``seq`` and its state
                changed since ``seq``.
        """
        if seq >= self.state.state_changed_seq:
            return self.state.state
        if self.base is None:
            return fold(self.records, until_seq=seq).state
        st = decode_snapshot(self.base)
        if seq < self.base_seq or st is None:
            raise HistoryNeeded(self.state.run_id, f"the state as of seq {seq}")
        for rec in self.records:
            if rec.seq > seq:
                break
            st.apply(rec)
        return st.state

    def event(self, seq: int) -> Event | None:
        """The body of event ``seq``; ``None`` if the run has no such event.

        Raises:
            HistoryNeeded: the run was loaded from a snapshot taken after ``seq``.
        """
        rec = self._events_by_seq.get(seq)
        if rec is None and seq <= self.base_seq:
            raise HistoryNeeded(self.state.run_id, f"event {seq}")
        return rec.body if rec is not None else None

    def collect(
        self, step: str, expected: Sequence[str], trigger_seq: int
    ) -> tuple[list[int], list[Any]] | None:
        with self.guard:
            seqs = self.state.collect(step, expected, trigger_seq)
            if seqs is None:
                return None
            if any(s not in self._events_by_seq for s in seqs):
                raise HistoryNeeded(self.state.run_id, "an event collected by fan-in")
            return seqs, [self._events_by_seq[s].body for s in seqs]


class RunCache:
    """An LRU of ``CachedRun`` for one workflow.

    Args:
        log: where records are read from.
        workflow: the workflow name.
        events: event registry used to decode ``evt``/``out`` payloads.
        max_runs: runs kept (default 1024); finished runs are dropped first (``ended`` puts a
            run at the front of the LRU order), then the least recently used. A run whose step
            suspends is dropped at once (``forget``): a resumed run is read again, from its
            snapshot and the records after it.
        snapshots: where run snapshots are read and written (default: none, runs are folded from
            their whole log).
        snapshot_every: records a run folds between two snapshots (default 1,000).

    Attributes:
        records_read: records read from the log so far (snapshots make this the tail only).
        snapshots_loaded / snapshots_written: counters.
        full_reloads: runs read again from their whole log after ``HistoryNeeded``.
    """

    def __init__(
        self,
        log: EventLog,
        workflow: str,
        events: Mapping[str, type[Event]],
        *,
        max_runs: int = 1024,
        snapshots: SnapshotStore | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {snapshot_every}")
        self._log = log
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every
        self.records_read = 0
        self.snapshots_loaded = 0
        self.snapshots_written = 0
        self.full_reloads = 0
        self._full: set[str] = set()  # runs to load without their snapshot (HistoryNeeded)
        self._writes: set[asyncio.Task[None]] = set()
        self._workflow = workflow
        self._events = events
        self._max = max_runs
        self._runs: OrderedDict[str, CachedRun] = OrderedDict()

    async def get(
        self,
        run_id: str,
        *,
        min_seq: int,
        refresh: bool = False,
        trigger: Record | None = None,
        length: int | None = None,
        delivered: RawRecord | None = None,
    ) -> CachedRun:
        """The run with at least every record up to ``min_seq``; with ``refresh``, up to the
        current end of its log. ``trigger``, a record the caller has decoded already, is used as
        is when the read returns it (a trigger is not decoded twice). ``length``: how many records
        the run had when the trigger was committed (its ``Jl-Length`` header); a run not held here
        whose length is below ``snapshot_every`` is read from its first record without looking
        for a snapshot (none can be older than the trigger; at worst the run grew since, and is
        read whole). ``delivered``: ``trigger`` as it was delivered, at its first delivery. A run held
        here up to exactly the record its append was checked against (``EventLog.predecessor``)
        takes the trigger as its next record, without a read; a run not held here whose trigger
        is the start event of a new run (``Jl-New-Run``) is folded from it without a read."""
        run = self._runs.get(run_id)
        if run is None and delivered is not None and trigger is not None and H_NEW_RUN in delivered.headers:
            run = self._new_run(run_id, delivered, trigger)
            if run is not None:
                self._runs[run_id] = run
                self._evict()
        if run is None:
            short = length is not None and length < self.snapshot_every
            run = await self._load(run_id, fresh=short or _starts_run(trigger, run_id))
            if run_id in self._runs:  # loaded meanwhile by another trigger of the run
                run = self._runs[run_id]
            else:
                self._runs[run_id] = run
                self._evict()
        else:
            self._runs.move_to_end(run_id)
            if (
                delivered is not None
                and not refresh
                and trigger is not None
                and trigger.seq == min_seq > run.last_seq
                and self._log.predecessor(delivered) == run.last_seq
            ):
                run.extend([trigger])  # the trigger's append checked that the run ended here
        if run.last_seq < min_seq or refresh:
            async with run.lock:
                if run.last_seq < min_seq or refresh:
                    bound = None if refresh else _expected(run, trigger, length)
                    if bound is None:
                        raws = await self._log.read(self._workflow, run_id, after_seq=run.last_seq)
                    else:  # only up to the trigger, whose commit says how many records that is
                        raws = await self._log.read(
                            self._workflow, run_id, after_seq=run.last_seq, up_to_seq=min_seq, expect=bound
                        )
                    self.records_read += len(raws)
                    known = trigger.seq if trigger is not None else -1
                    run.extend(
                        [
                            trigger if r.seq == known else decode_record(r, self._events)  # type: ignore[misc]  # mixed list of the trigger and decoded records, all Record
                            for r in raws
                        ]
                    )
        self._maybe_snapshot(run)
        if run.state.terminal:
            self.ended(run_id)
        return run

    def _new_run(self, run_id: str, raw: RawRecord, trigger: Record) -> CachedRun | None:
        """The run as its new-run start commit made it: the ``RunStarted`` the starter sent just
        before ``raw`` (rebuilt from ``raw``, with the commit's execution id; its sequence is not
        known and taken as ``raw.seq - 1``, which no question the fold answers depends on), and
        the start event. ``None`` when ``raw`` is not such a start event."""
        if not _starts_run(trigger, run_id) or trigger.kind != "evt" or raw.seq < 2:
            return None
        tag = parse_commit_tag(trigger.commit)  # type: ignore[arg-type]  # _starts_run checked the trigger's commit tag
        assert tag is not None  # (_starts_run parsed it)
        # Made as the starter made it, without encoding and decoding it (a cost on every new
        # run; measured in benchmarks/).
        event = start_event_message(self._log.prefix, self._workflow, run_id, trigger.type, raw.data, new_run=True)
        body = run_started(self._workflow, run_id, event, copy=tag[2] is not None)
        commit = commit_tag(start_key(run_id), 0, tag[2])
        started = Record(raw.seq - 1, "sys", "RunStarted", self._workflow, run_id, raw.time_ns, body, None, None, None, None, commit)
        run = CachedRun()
        run.extend([started, trigger])
        if run.state.status != "running" or run.state.incomplete or run.state.orphans:
            return None  # (not the start commit this header promises: read the log instead)
        return run

    async def _load(self, run_id: str, *, fresh: bool = False) -> CachedRun:
        if self.snapshots is None or run_id in self._full or fresh:
            self._full.discard(run_id)
            return CachedRun()
        try:
            data = await self.snapshots.get(self._workflow, run_id)
        except Exception as exc:  # a snapshot is an optimisation: fold from the log instead
            logger.warning("snapshot of %s unreadable (%r); folding its log", run_id, exc)
            return CachedRun()
        st = decode_snapshot(data) if data else None
        if st is None or st.run_id != run_id:
            return CachedRun()
        self.snapshots_loaded += 1
        return CachedRun(data, st)

    def reload_full(self, run_id: str) -> None:
        """Drop the run and read it from its whole log next time (after ``HistoryNeeded``)."""
        self._runs.pop(run_id, None)
        self._full.add(run_id)
        self.full_reloads += 1

    def _maybe_snapshot(self, run: CachedRun) -> None:
        st = run.state
        if self.snapshots is None or st.records - run.snapshot_records < self.snapshot_every:
            return
        with run.guard:
            try:
                data = encode_snapshot(st)
            except (TypeError, ValueError, msgspec.EncodeError) as exc:
                logger.warning("no snapshot of %s: %s", st.run_id, exc)
                run.snapshot_records = st.records  # do not retry at every step
                return
            run.snapshot_records = st.records
        task = asyncio.create_task(self._write(st.run_id, data))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, run_id: str, data: bytes) -> None:
        assert self.snapshots is not None
        try:
            if await self.snapshots.put(self._workflow, run_id, data):
                self.snapshots_written += 1
        except Exception as exc:  # the next boundary writes again
            logger.warning("snapshot of %s not written: %r", run_id, exc)

    async def flush(self) -> None:
        """Wait for snapshot writes in flight."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def ended(self, run_id: str) -> None:
        """The run has ended: first to be evicted (its triggers are all handled)."""
        if run_id in self._runs:
            self._runs.move_to_end(run_id, last=False)

    def _evict(self) -> None:
        # O(1) per new run: ended runs sit at the front of the LRU order. (A scan of the oldest
        # runs for an ended one costs CPU on every new run, the more so when several processes
        # share a workflow, whose caches hold runs they never see end.)
        while len(self._runs) > self._max:
            self._runs.popitem(last=False)


def _expected(run: CachedRun, trigger: Record | None, length: int | None) -> int | None:
    """How many records ``run`` lacks up to ``trigger``: the run had ``length`` records when the
    trigger's commit was made (``Jl-Length``), and the trigger is message ``i`` of that commit;
    ``None`` when that cannot be told (no length, no commit tag, or a count that does not add
    up)."""
    if trigger is None or length is None or trigger.commit is None:
        return None
    tag = parse_commit_tag(trigger.commit)
    if tag is None:
        return None
    missing = length + tag[1] + 1 - run.state.records
    return missing if missing > 0 else None


def _starts_run(trigger: Record | None, run_id: str) -> bool:
    """Whether ``trigger`` is the start event of the run's start commit: the run then has too few
    records for a snapshot, and looking one up (a KV round trip) is skipped."""
    if trigger is None or trigger.commit is None:
        return False
    tag = parse_commit_tag(trigger.commit)
    return tag is not None and tag[:2] == (start_key(run_id), 1)

