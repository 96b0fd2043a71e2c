"""Snapshots of a run's fold (engine.state.snapshots) and the run cache reading snapshot + tail."""

from __future__ import annotations

import asyncio
import contextlib
import zlib

import msgspec
import pytest

from engine import MemoryLog, WorkflowCancelledError, fold
from engine.memory.snapshots import MemorySnapshots
from engine.runtime.executor import Executor
from engine.runtime.inprocess import start_run
from engine.runtime.runs import CachedRun, RunCache
from engine.state.fold import HistoryNeeded, RunState
from engine.state.snapshots import (
    HANDLED_SLOTS,
    SNAPSHOT_VERSION,
    decode_snapshot,
    encode_snapshot,
    snapshot_seq,
)
from engine.wire.codec import decode_record
from engine.wire.headers import parse_commit_tag
from tests.integration.procs import eventually
from tests.workflows import FanInOut, Interview, Reply, Ticker


def _same(a: RunState, b: RunState) -> None:
    for slot in sorted(HANDLED_SLOTS - {"_memos", "incomplete", "_log", "base_seq"}):
        assert getattr(a, slot) == getattr(b, slot), slot
    assert b.base_seq in (0, b.seq)  # a fold from a snapshot starts at the snapshot's seq
    assert a.incomplete.keys() == b.incomplete.keys()
    for key, p in a.incomplete.items():
        q = b.incomplete[key]
        assert (p.head_seq, p.base, p.seen) == (q.head_seq, q.base, q.seen)
        assert p.missing("jetloom", a.workflow, a.run_id) == q.missing("jetloom", a.workflow, a.run_id)


async def _run(wf: type, log: MemoryLog, **fields: object) -> str:
    handler = wf(timeout=30, log=log).run(**fields)
    await handler
    return handler.run_id


def test_every_run_state_slot_is_in_the_snapshot_format() -> None:
    # a new RunState field must be carried by snapshots (engine/state/snapshots.py), else none is written
    assert set(RunState.__slots__) == HANDLED_SLOTS


async def test_snapshot_round_trip_of_a_fan_in_run() -> None:
    log = MemoryLog()
    rid = await _run(FanInOut, log, n=20, delay=0)
    st = fold(decode_record(r, FanInOut.events) for r in await log.read("FanInOut", rid))
    data = encode_snapshot(st)
    assert snapshot_seq(data) == st.seq
    back = decode_snapshot(data)
    assert back is not None
    _same(st, back)
    assert back.collect("join", ["Squared"] * 20, st.seq) == st.collect("join", ["Squared"] * 20, st.seq)


async def test_snapshot_round_trip_of_waits_and_an_interrupted_commit() -> None:
    log = MemoryLog()
    handler = Interview(timeout=30, log=log).run(people=["a", "b"])
    rid = handler.run_id

    async def records_with(text: str, n: int) -> bool:
        return sum(text in r.subject for r in await log.read("Interview", rid)) >= n

    await eventually(lambda: records_with("sys.StepSuspended", 2), timeout=10, what="two waits")
    await handler.send_event(Reply(who="a", text="Ann"))
    # begin's StepCompleted, then gather's on a's Answered (ask's commit is that event alone)
    await eventually(lambda: records_with("sys.StepCompleted", 2), timeout=10, what="a answered")
    records = [decode_record(r, Interview.events) for r in await log.read("Interview", rid)]
    # leave out the second event of begin's commit, as a crash part-way through it would
    dropped = next(r.seq for r in records if r.type == "Person" and r.commit and parse_commit_tag(r.commit)[1] == 2)
    st = fold(r for r in records if r.seq != dropped)
    assert st.waits and st.incomplete
    back = decode_snapshot(encode_snapshot(st))
    assert back is not None
    _same(st, back)
    await handler.cancel_run()
    with contextlib.suppress(WorkflowCancelledError):
        await handler


def test_other_versions_and_garbage_are_ignored() -> None:
    st = RunState("W", "r1")
    data = encode_snapshot(st)
    assert decode_snapshot(data) is not None
    assert decode_snapshot(b"not a snapshot") is None
    assert snapshot_seq(b"") is None
    other = zlib.compress(msgspec.msgpack.encode([SNAPSHOT_VERSION + 1, 5])) + data[len(data) // 2 :]
    assert decode_snapshot(other) is None and snapshot_seq(other) is None


async def test_memory_store_keeps_the_snapshot_covering_most_records() -> None:
    store = MemorySnapshots()
    old, new = RunState("W", "r"), RunState("W", "r")
    old.seq, new.seq = 10, 20
    assert await store.put("W", "r", encode_snapshot(new))
    assert not await store.put("W", "r", encode_snapshot(old))
    assert snapshot_seq(await store.get("W", "r") or b"") == 20


async def test_cache_reads_the_snapshot_and_only_the_tail() -> None:
    log = MemoryLog()
    rid = await _run(Ticker, log, n=40, interval=0)
    total = len(await log.read("Ticker", rid))
    store = MemorySnapshots()
    first = RunCache(log, "Ticker", Ticker.events, snapshots=store, snapshot_every=50)
    full = await first.get(rid, min_seq=0, refresh=True)
    await first.flush()
    assert first.records_read == total and first.snapshots_written == 1

    second = RunCache(log, "Ticker", Ticker.events, snapshots=store)
    again = await second.get(rid, min_seq=0, refresh=True)
    assert second.snapshots_loaded == 1 and second.records_read == 0
    _same(full.state, again.state)
    assert again.state.status == "completed" and again.state.result is not None


async def test_older_history_than_the_snapshot_raises_history_needed() -> None:
    log = MemoryLog()
    rid = await _run(Ticker, log, n=5, interval=0)
    records = [decode_record(r, Ticker.events) for r in await log.read("Ticker", rid)]
    st = fold(records[:6])
    run = CachedRun(encode_snapshot(st), decode_snapshot(encode_snapshot(st)))
    run.extend(records[6:])
    tail_events = [r for r in records[6:] if r.kind == "evt"]
    assert tail_events  # (the run's ticks after the snapshot)
    for r in tail_events:
        assert run.event(r.seq) == r.body  # after the snapshot: from the records read
    with pytest.raises(HistoryNeeded):
        run.event(records[1].seq)  # the start event, before the snapshot
    assert run.state_at(run.last_seq) == run.state.state


async def test_two_executors_finish_a_fan_in_from_snapshots() -> None:
    """Every few records a snapshot is written; the second executor loads runs from them, and
    a fan-in that needs events from before its snapshot reloads the whole log."""
    log = MemoryLog()
    store = MemorySnapshots()
    executors = [
        Executor(FanInOut(), log, snapshots=store, snapshot_every=7, max_cached_runs=1) for _ in range(2)
    ]
    for ex in executors:
        await ex.start()
    try:
        handlers = [
            start_run(log, FanInOut, start_event=None, run_id=None, fields={"n": 15, "delay": 0}, timeout=30)
            for _ in range(6)
        ]
        results = await asyncio.gather(*handlers)
        assert results == [[i * i for i in range(15)]] * len(handlers)
    finally:
        for ex in executors:
            await ex.stop(grace=0)
    assert store.puts > 0
    assert sum(ex.runs.snapshots_loaded for ex in executors) > 0
    assert sum(ex.runs.full_reloads for ex in executors) > 0, "a fan-in reached back past a snapshot"


def test_run_started_initial_state_seeds_the_fold() -> None:
    from engine.model.records import RawRecord
    from engine.runtime.commands import event_payload, start_messages

    messages = start_messages("jetloom", "W", "r", "StartEvent", event_payload("StartEvent", {}), initial_state={"total": 3})
    st = fold(decode_record(RawRecord(i + 1, m.subject, m.headers, m.data, 0)) for i, m in enumerate(messages))
    assert st.state == {"total": 3} and st.state_changed_seq == 1


async def test_cache_evicts_ended_runs_first_then_the_least_recently_used() -> None:
    from engine.runtime.commands import event_payload, start_messages

    log = MemoryLog()
    for rid in "abcde":
        await log.append(start_messages(log.prefix, "W", rid, "StartEvent", event_payload("StartEvent", {})))
    cache = RunCache(log, "W", {}, max_runs=3)
    for rid in "abc":
        await cache.get(rid, min_seq=1)
    cache.ended("c")  # the newest, but ended: evicted before a and b
    await cache.get("d", min_seq=1)
    # which runs are held, seen from outside: getting a held run reads nothing
    before = cache.records_read
    await cache.get("a", min_seq=1)
    await cache.get("b", min_seq=1)
    assert cache.records_read == before  # a and b were kept
    await cache.get("c", min_seq=1)  # c was not: read again; d is now the least recently used
    assert cache.records_read > before
    before = cache.records_read
    await cache.get("b", min_seq=1)
    await cache.get("c", min_seq=1)
    assert cache.records_read == before
    await cache.get("d", min_seq=1)  # evicted as the least recently used
    assert cache.records_read > before


async def test_a_run_shorter_than_a_snapshot_interval_is_read_without_a_snapshot_lookup() -> None:
    from engine.runtime.commands import event_payload, start_messages

    class CountingSnapshots(MemorySnapshots):
        gets = 0

        async def get(self, workflow: str, run_id: str) -> bytes | None:
            self.gets += 1
            return await super().get(workflow, run_id)

    log = MemoryLog()
    for rid in "abc":
        await log.append(start_messages(log.prefix, "W", rid, "StartEvent", event_payload("StartEvent", {})))
    store = CountingSnapshots()
    cache = RunCache(log, "W", {}, snapshots=store, snapshot_every=10)
    assert (await cache.get("a", min_seq=1, length=9)).state.status == "running"
    assert store.gets == 0  # Jl-Length said 9 records: no snapshot can be there yet
    await cache.get("b", min_seq=1, length=10)
    await cache.get("c", min_seq=1)
    assert store.gets == 2


@pytest.mark.parametrize("atomic", [False, True])
async def test_a_new_runs_first_step_folds_the_start_commit_without_a_read(atomic: bool) -> None:
    from engine import StartEvent
    from engine.runtime.inprocess import append_start
    from engine.wire.headers import H_NEW_RUN

    log = MemoryLog()
    log.atomic = atomic  # (the copy in RunStarted and the execution ids exist only without it)
    await append_start(log, "W", "fresh1", StartEvent(topic="x"), fresh=True)
    raws = await log.read("W", "fresh1")
    assert [r.subject.rsplit(".", 1)[1] for r in raws] == ["RunStarted", "StartEvent"]
    start = raws[1]
    assert start.headers[H_NEW_RUN] == "1"
    whole = fold(decode_record(r) for r in raws)
    cache = RunCache(log, "W", {})
    run = await cache.get("fresh1", min_seq=start.seq, trigger=decode_record(start), delivered=start)
    assert cache.records_read == 0
    got = run.state
    for slot in ("status", "start_event", "incomplete", "orphans", "records", "done", "events", "state", "seq"):
        assert getattr(got, slot) == getattr(whole, slot), slot
    # the RunStarted made up from the start event is the one the starter wrote, field for field
    made, stored = run.records[0], decode_record(raws[0])
    assert msgspec.structs.replace(made, time_ns=stored.time_ns) == stored
    assert msgspec.json.encode(made.body) == msgspec.json.encode(stored.body)


async def test_a_start_event_that_is_not_its_runs_start_commit_is_read() -> None:
    from engine.model.records import OutMessage
    from engine.runtime.commands import event_payload, start_messages
    from engine.wire.headers import H_NEW_RUN
    from engine.wire.subjects import run_subject

    log = MemoryLog()
    await log.append(start_messages(log.prefix, "W", "r", "StartEvent", event_payload("StartEvent", {})))
    odd = OutMessage(run_subject(log.prefix, "W", "r", "evt", "StartEvent"), b"{}", {"Jl-Run": "r", H_NEW_RUN: "1"})
    await log.append([odd])
    raw = (await log.read("W", "r"))[-1]
    cache = RunCache(log, "W", {})
    run = await cache.get("r", min_seq=raw.seq, trigger=decode_record(raw), delivered=raw)
    assert cache.records_read == 3 and run.state.records == 3  # no start tag: read, not made up


async def test_a_trigger_appended_right_after_the_cached_end_is_taken_without_a_read() -> None:
    """A run held up to sequence E takes a trigger whose append checked that the run ended at E
    (``EventLog.predecessor``) as its next record; any other trigger is read."""
    from engine.model.records import OutMessage
    from engine.runtime.commands import event_payload, start_messages
    from engine.wire.subjects import run_subject

    log = MemoryLog()
    await log.append(start_messages(log.prefix, "W", "r", "StartEvent", event_payload("StartEvent", {})))
    cache = RunCache(log, "W", {})
    run = await cache.get("r", min_seq=0, refresh=True)
    held, read = run.last_seq, cache.records_read

    def event(n: int) -> OutMessage:
        return OutMessage(run_subject(log.prefix, "W", "r", "evt", "E"), b"{}", {"Jl-Run": "r", "Jl-N": str(n)})

    checked = await log.append([event(1)], expected_last_seq=held)
    raw = (await log.read("W", "r", after_seq=held))[0]
    assert log.predecessor(raw) == held
    run = await cache.get("r", min_seq=raw.seq, trigger=decode_record(raw), delivered=raw)
    assert cache.records_read == read and run.last_seq == checked.last_seq
    assert run.records[-1].seq == raw.seq
    # unchecked, or checked after a record the cache lacks: read
    await log.append([event(2)])
    nxt = await log.append([event(3)], expected_last_seq=checked.last_seq + 1)
    raw = (await log.read("W", "r", after_seq=nxt.last_seq - 1))[0]
    run = await cache.get("r", min_seq=raw.seq, trigger=decode_record(raw), delivered=raw)
    assert cache.records_read == read + 2 and run.last_seq == nxt.last_seq
