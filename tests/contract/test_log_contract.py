"""One contract, two logs: MemoryLog and JetStreamLog (real nats-server) must behave the same."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.jetstream.log import JetStreamLog
from engine.memory.log import MemoryLog
from engine.model.errors import LastSeqMismatchError
from engine.model.records import OutMessage, RawRecord
from engine.ports.runindex import LogRunIndex
from engine.wire.commit import tag_commit
from engine.wire.headers import execution_of
from engine.wire.subjects import run_subject
from services.natsserver import EmbeddedNats

WF = "Contract"


@pytest.fixture(params=["memory", "jetstream", "jetstream-nats-py"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryLog | JetStreamLog]:
    """Each log under contract; ``jetstream-nats-py`` is JetStream with the fast path off
    (``fast_path=False``): nats-py's own parser, publishes and ``Msg`` path, the branches taken on
    a client that cannot be tapped."""
    if request.param == "memory":
        yield MemoryLog()
        return
    fast = request.param == "jetstream"
    async with EmbeddedNats(port=0, store_dir=tmp_path / "nats") as server:
        js_log = await JetStreamLog.connect(server.url, ack_wait=timedelta(seconds=2), fast_path=fast)
        try:
            assert js_log.fast_path is fast and js_log.outbox.usable is fast
            yield js_log
        finally:
            await js_log.close()


def msg(run: str, kind: str, type_name: str, data: bytes = b"{}", **headers: str) -> OutMessage:
    return OutMessage(run_subject("jetloom", WF, run, kind, type_name), data, dict(headers))  # type: ignore[arg-type]


async def test_append_is_ordered_and_read_returns_the_run(log: MemoryLog | JetStreamLog) -> None:
    r1 = await log.append([msg("r1", "sys", "RunStarted"), msg("r1", "evt", "StartEvent", b'{"a":1}')])
    assert r1.count == 2 and not r1.duplicate
    await log.append([msg("r2", "evt", "StartEvent")])
    await log.append([msg("r1", "evt", "Chunk", b'{"t":"x"}', **{"Jl-Step": "s"})])
    records = await log.read(WF, "r1")
    assert [r.subject.rsplit(".", 1)[1] for r in records] == ["RunStarted", "StartEvent", "Chunk"]
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs)  # in order (not promised contiguous: other appends may interleave)
    assert records[1].data == b'{"a":1}'
    assert records[2].headers["Jl-Step"] == "s"
    assert all(r.time_ns > 1_600_000_000 * 10**9 for r in records)
    assert r1.last_seq == seqs[1]


async def test_read_bounds(log: MemoryLog | JetStreamLog) -> None:
    for i in range(5):
        await log.append([msg("r1", "evt", "E", str(i).encode())])
    seqs = [r.seq for r in await log.read(WF, "r1")]
    assert [r.seq for r in await log.read(WF, "r1", after_seq=seqs[1])] == seqs[2:]
    assert [r.seq for r in await log.read(WF, "r1", up_to_seq=seqs[2])] == seqs[:3]
    assert [r.seq for r in await log.read(WF, "r1", after_seq=seqs[0], up_to_seq=seqs[3])] == seqs[1:4]
    assert await log.read(WF, "nope") == []


async def test_read_spans_more_than_one_batch(log: MemoryLog | JetStreamLog) -> None:
    await log.append([msg("big", "evt", "E", str(i).encode()) for i in range(2500)])
    records = await log.read(WF, "big")
    assert [r.data for r in records] == [str(i).encode() for i in range(2500)]


async def test_idempotency_key_stores_once(log: MemoryLog | JetStreamLog) -> None:
    first = await log.append([msg("r1", "evt", "A"), msg("r1", "sys", "StepCompleted")], idempotency_key="k1")
    again = await log.append([msg("r1", "evt", "A"), msg("r1", "sys", "StepCompleted")], idempotency_key="k1")
    single = await log.append([msg("r1", "evt", "B")], idempotency_key="k2")
    single_again = await log.append([msg("r1", "evt", "B")], idempotency_key="k2")
    assert not first.duplicate and again.duplicate and again.count == 0
    assert not single.duplicate and single_again.duplicate
    assert len(await log.read(WF, "r1")) == 3
    assert again.last_seq == first.seqs[0]  # a duplicate reports where the original is


async def test_append_reports_each_sequence(log: MemoryLog | JetStreamLog) -> None:
    result = await log.append([msg("r1", "evt", "A"), msg("r1", "evt", "B"), msg("r1", "evt", "C")], idempotency_key="k")
    assert result.count == 3 and list(result.seqs) == [r.seq for r in await log.read(WF, "r1")]
    assert result.last_seq == result.seqs[-1]


async def test_a_duplicate_first_message_decides_whose_commit_stands(log: MemoryLog | JetStreamLog) -> None:
    """The first message decides whose commit stands: the second writer's append is reported a
    duplicate, and whatever of it a pipelined log stored names another execution than the head
    that stands (the fold leaves such orphans out: tests/unit/test_commit_orphans.py)."""
    mine = tag_commit([msg("r1", "sys", "StepCompleted", b'"mine"'), msg("r1", "evt", "A", b'"mine"')], "k")
    await log.append(mine, idempotency_key="k")
    theirs = tag_commit(
        [msg("r1", "sys", "StepCompleted", b'"theirs"'), msg("r1", "evt", "A", b'"theirs"'), msg("r1", "evt", "B", b'"theirs"')],
        "k",
    )
    result = await log.append(theirs, idempotency_key="k")
    assert result.duplicate and result.count == 0
    records = await log.read(WF, "r1")
    # the memory log drops a duplicate commit whole; JetStream stores what went out with the
    # refused head (A and B), as orphans
    assert len(records) == (2 if isinstance(log, MemoryLog) else 4), [r.subject for r in records]
    assert [r.data for r in records[:2]] == [b'"mine"', b'"mine"']
    assert all(execution_of(r.headers) == execution_of(theirs[0].headers) for r in records[2:])
    assert execution_of(mine[0].headers) != execution_of(theirs[0].headers)
    assert all(r.data == b'"theirs"' and not r.subject.endswith("StepCompleted") for r in records[2:])


async def test_an_interrupted_append_is_completed_by_its_missing_indices(log: MemoryLog | JetStreamLog) -> None:
    commit = [msg("r1", "sys", "StepCompleted"), msg("r1", "evt", "A", b"1"), msg("r1", "evt", "B", b"2")]
    await log.append(commit[:2], idempotency_key="k")  # a crash after the second message
    await log.append([msg("r1", "evt", "X", b"other writer")])
    # The repair re-appends indices 1 and 2: 1 is a duplicate, 2 is stored.
    repair = await log.append(commit[1:], idempotency_key="k", indices=[1, 2])
    assert repair.count == 1 and not repair.duplicate
    again = await log.append(commit[1:], idempotency_key="k", indices=[1, 2])
    assert again.count == 0 and again.duplicate
    records = await log.read(WF, "r1")
    assert [r.subject.rsplit(".", 1)[1] for r in records] == ["StepCompleted", "A", "X", "B"]


async def test_follow_replays_then_tails(log: MemoryLog | JetStreamLog) -> None:
    await log.append([msg("r1", "evt", "A")])
    got: list[str] = []

    async def reader() -> None:
        async for rec in log.follow(WF, "r1"):
            got.append(rec.subject.rsplit(".", 1)[1])
            if len(got) == 3:
                return

    task = asyncio.create_task(reader())
    await log.append([msg("r1", "evt", "B"), msg("r2", "evt", "X")])
    await log.append([msg("r1", "evt", "C")])
    await asyncio.wait_for(task, 10)
    assert got == ["A", "B", "C"]
    first = (await log.read(WF, "r1"))[0].seq
    tail = []
    async for rec in log.follow(WF, "r1", after_seq=first):
        tail.append(rec.subject.rsplit(".", 1)[1])
        if len(tail) == 2:
            break
    assert tail == ["B", "C"]


async def test_follow_of_some_kinds_skips_the_others_stored_and_live(log: MemoryLog | JetStreamLog) -> None:
    await log.append([msg("r1", "sys", "RunStarted"), msg("r1", "evt", "A"), msg("r1", "out", "O1")])
    some: list[str] = []
    every: list[str] = []

    stored = [asyncio.Event(), asyncio.Event()]

    async def reader(out: list[str], kinds: tuple[str, ...] | None, until: str, past: asyncio.Event) -> None:
        async for rec in log.follow(WF, "r1", kinds=kinds):
            out.append(rec.subject.rsplit(".", 1)[1])
            if out[-1] == "O1":  # the last stored record: what follows comes live
                past.set()
            if out[-1] == until:
                return

    tasks = [
        asyncio.create_task(reader(some, ("sys", "out"), "RunCompleted", stored[0])),
        asyncio.create_task(reader(every, None, "RunCompleted", stored[1])),
    ]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in stored)), 10)  # both past their read
    await log.append([msg("r1", "evt", "B"), msg("r1", "sys", "X"), msg("r2", "sys", "Y")])
    await log.append([msg("r1", "out", "O2"), msg("r1", "cmd", "c"), msg("r1", "sys", "RunCompleted")])
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert some == ["RunStarted", "O1", "X", "O2", "RunCompleted"]
    assert every == ["RunStarted", "A", "O1", "B", "X", "O2", "c", "RunCompleted"]


async def test_a_callback_follow_gets_the_runs_new_records_of_its_kinds_in_order(
    log: MemoryLog | JetStreamLog,
) -> None:
    """``follow_callback``: what is stored after it is set up, of the run and kinds asked for, in
    log order, until it is stopped; a sink that raises does not stop it."""
    await log.append([msg("r1", "sys", "Before")])  # stored before: not handed over
    some: list[tuple[int, str]] = []
    every: list[str] = []
    done = asyncio.Event()

    def take_some(rec: RawRecord) -> None:
        some.append((rec.seq, rec.subject.rsplit(".", 1)[1]))
        if rec.subject.endswith(".Boom"):
            raise RuntimeError("a sink's own failure")
        if rec.subject.endswith(".RunCompleted"):
            done.set()

    stop_some = await log.follow_callback(WF, "r1", take_some, kinds=("sys", "out"))
    after = asyncio.Event()

    def take_every(rec: RawRecord) -> None:
        every.append(rec.subject.rsplit(".", 1)[1])
        if every[-1] == "After":
            after.set()

    stop_every = await log.follow_callback(WF, "r1", take_every)
    await log.append([msg("r1", "sys", "RunStarted"), msg("r1", "evt", "A"), msg("r2", "sys", "Other")])
    await log.append([msg("r1", "sys", "Boom"), msg("r1", "out", "O1"), msg("r1", "sys", "RunCompleted")])
    await asyncio.wait_for(done.wait(), 10)
    stop_some()
    stop_some()  # (twice is fine)
    await log.append([msg("r1", "sys", "After")])
    records = await log.read(WF, "r1")
    await asyncio.wait_for(after.wait(), 10)
    stop_every()
    assert [name for _, name in some] == ["RunStarted", "Boom", "O1", "RunCompleted"]
    assert [seq for seq, _ in some] == [r.seq for r in records if r.subject.rsplit(".", 2)[1] in ("sys", "out")][1:-1]
    assert every == ["RunStarted", "A", "Boom", "O1", "RunCompleted", "After"]


async def test_a_checked_append_shows_the_record_it_follows(log: MemoryLog | JetStreamLog) -> None:
    """``expected_last_seq`` stores the first message only right after that record of the run,
    and the stored record (read or delivered) names it: ``predecessor``."""
    first = await log.append([msg("r1", "evt", "A")])
    await log.append([msg("r2", "evt", "A")])  # another run's record in between changes nothing
    checked = await log.append([msg("r1", "evt", "A", b"2"), msg("r1", "evt", "B")], expected_last_seq=first.last_seq)
    with pytest.raises(LastSeqMismatchError):
        await log.append([msg("r1", "evt", "A", b"late")], expected_last_seq=first.last_seq)
    records = await log.read(WF, "r1")
    assert [r.seq for r in records] == [first.last_seq, *checked.seqs]
    assert [log.predecessor(r) for r in records] == [None, first.last_seq, None]
    await log.ensure_consumer(WF, "stepa", ["A"])
    delivered = []
    async for d in log.consume(WF, "stepa", max_in_flight=4):
        delivered.append(log.predecessor(d.record))
        await d.ack()
        if len(delivered) == 3:
            break
    assert delivered == [None, None, first.last_seq]  # r1's A, r2's A, r1's checked A


async def test_consumer_delivers_matching_events_from_the_start(log: MemoryLog | JetStreamLog) -> None:
    """A step that accepts several event types has a consumer for each: the first type (sorted)
    through its main consumer, each other through ``consume(event_type=...)``."""
    await log.append([msg("r1", "evt", "C", b"0"), msg("r1", "evt", "A", b"1"), msg("r1", "evt", "B", b"2")])
    await log.append([msg("r1", "sys", "RunStarted")])
    await log.ensure_consumer(WF, "stepa", ["C", "A"])
    await log.append([msg("r2", "evt", "C", b"3"), msg("r2", "out", "A", b"4"), msg("r2", "evt", "A", b"5")])

    async def first(n: int, event_type: str | None = None) -> list[tuple[bytes, int]]:
        got = []
        async for d in log.consume(WF, "stepa", max_in_flight=4, event_type=event_type):
            got.append((d.record.data, d.attempt))
            await d.ack()
            if len(got) == n:
                break
        return got

    assert await asyncio.wait_for(first(2), 10) == [(b"1", 1), (b"5", 1)]  # A, the first type
    assert await asyncio.wait_for(first(2, "C"), 10) == [(b"0", 1), (b"3", 1)]


async def test_a_steps_commands_come_through_its_commands_consumer_only(log: MemoryLog | JetStreamLog) -> None:
    await log.append([msg("r1", "cmd", "stepa", b"c1"), msg("r1", "evt", "A", b"e1"), msg("r1", "cmd", "other", b"x")])
    await log.ensure_consumer(WF, "stepa", ["A"])
    await log.append([msg("r2", "cmd", "stepa", b"c2"), msg("r2", "evt", "A", b"e2")])

    async def first(n: int, *, commands: bool) -> list[bytes]:
        got = []
        async for d in log.consume(WF, "stepa", max_in_flight=4, commands=commands):
            got.append(d.record.data)
            await d.ack()
            if len(got) == n:
                break
        return got

    assert await asyncio.wait_for(first(2, commands=True), 10) == [b"c1", b"c2"]
    assert await asyncio.wait_for(first(2, commands=False), 10) == [b"e1", b"e2"]
    await log.append([msg("r3", "cmd", "stepa", b"c3"), msg("r3", "evt", "A", b"e3")])
    assert await asyncio.wait_for(first(1, commands=False), 10) == [b"e3"]  # (not c3 first)


async def test_nak_redelivers_with_a_higher_attempt(log: MemoryLog | JetStreamLog) -> None:
    await log.ensure_consumer(WF, "s", ["A"])
    await log.append([msg("r1", "evt", "A", b"x")])
    attempts = []
    async for d in log.consume(WF, "s", max_in_flight=1):
        attempts.append(d.attempt)
        if d.attempt == 1:
            await d.nak(timedelta(milliseconds=10))
        else:
            await d.ack()
            break
    assert attempts == [1, 2]


async def _all_delivered_elsewhere(log: MemoryLog | JetStreamLog, n: int) -> None:
    """The positive marker of the "nothing more arrives" checks: a second consumer (step ``m``)
    of the same ``n`` records gets them all through the same log and connection, so deliveries
    the first consumer's limit did not hold back would have arrived by then as well."""
    await log.ensure_consumer(WF, "m", ["A"])
    it = log.consume(WF, "m", max_in_flight=n)
    try:
        for _ in range(n):
            d = await asyncio.wait_for(anext(it), 5)
            await d.ack()
    finally:
        await it.aclose()


async def test_max_in_flight_bounds_unsettled_deliveries(log: MemoryLog | JetStreamLog) -> None:
    await log.ensure_consumer(WF, "s", ["A"])
    await log.append([msg("r1", "evt", "A", str(i).encode()) for i in range(6)])
    held = []
    it = log.consume(WF, "s", max_in_flight=2)
    held.append(await anext(it))
    held.append(await anext(it))
    blocked = asyncio.ensure_future(anext(it))
    await _all_delivered_elsewhere(log, 6)
    assert not blocked.done()  # a third delivery waits for a settle
    await held[0].ack()
    third = await asyncio.wait_for(blocked, 5)
    assert third.record.data == b"2"
    await it.aclose()


async def test_deliveries_handed_to_dispatch_stay_within_max_in_flight(log: MemoryLog | JetStreamLog) -> None:
    """With ``dispatch``, each delivery reaches the caller once, by ``dispatch`` (JetStream: from
    the read loop) or by the iterator (MemoryLog), and no more than ``max_in_flight`` unsettled."""
    await log.ensure_consumer(WF, "s", ["A"])
    await log.append([msg("r1", "evt", "A", str(i).encode()) for i in range(6)])
    got: list[object] = []
    arrived = asyncio.Event()

    def take(d: object) -> None:
        got.append(d)
        arrived.set()

    async def iterate() -> None:
        async for d in log.consume(WF, "s", max_in_flight=2, dispatch=take):
            take(d)

    task = asyncio.create_task(iterate())
    try:
        while len(got) < 2:
            await asyncio.wait_for(arrived.wait(), 5)
            arrived.clear()
        await _all_delivered_elsewhere(log, 6)
        assert len(got) == 2  # a third delivery waits for a settle
        while len(got) < 6:  # settling lets the next ones through
            arrived.clear()
            for d in got:
                await d.ack()  # type: ignore[attr-defined]
            if len(got) < 6:
                await asyncio.wait_for(arrived.wait(), 5)
        assert [d.record.data for d in got] == [str(i).encode() for i in range(6)]  # type: ignore[attr-defined]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_dead_letters_keep_the_message_and_reason(log: MemoryLog | JetStreamLog) -> None:
    await log.append([msg("r1", "evt", "A", b"garbage")])
    rec = (await log.read(WF, "r1"))[0]
    await log.dead_letter(rec, reason="does not decode", consumer="stepa")
    (dl,) = await log.dead_letters()
    assert dl.original_seq == rec.seq and dl.original_subject == rec.subject
    assert dl.reason == "does not decode" and dl.consumer == "stepa" and dl.data == b"garbage"
    assert dl.subject == f"jetloom.dlq.{WF}.stepa"


async def test_read_and_follow_agree_on_every_field(log: MemoryLog | JetStreamLog) -> None:
    await log.append([msg("r1", "evt", "A", b"1", **{"Jl-Step": "s"}), msg("r1", "sys", "RunStarted")])
    read = await log.read(WF, "r1")
    followed = []
    async for rec in log.follow(WF, "r1"):
        followed.append(rec)
        if len(followed) == 2:
            break
    assert followed == read  # same envelope (seq, subject, headers, data, nanosecond time)


async def test_follow_type_sees_every_runs_records_of_one_type_scheduled_ones_too(
    log: MemoryLog | JetStreamLog,
) -> None:
    got: list[RawRecord] = []
    stop = await log.follow_type(WF, "sys", "RunFailed", got.append)
    try:
        await log.append([msg("r1", "sys", "RunStarted"), msg("r1", "sys", "RunCancelled")])
        await log.append([msg("r2", "sys", "RunFailed", b'{"error_type":"X","message":"m"}')])
        # a durable timer fires it: on JetStream the server stores it, no client publishes it
        fire_at = time.time_ns() + 200_000_000
        await log.schedule(msg("r3", "sys", "RunFailed"), at_ns=fire_at, name="timeout", idempotency_key="r3:t")
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [r.subject.split(".")[3] for r in got] == ["r2", "r3"]
        assert all(r.subject.endswith(".sys.RunFailed") and r.seq > 0 for r in got)
    finally:
        stop()


async def test_last_seq_is_the_logs_last_sequence(log: MemoryLog | JetStreamLog) -> None:
    assert await log.last_seq() == 0
    await log.append([msg("r1", "sys", "RunStarted"), msg("r1", "evt", "A")])
    res = await log.append([msg("r2", "evt", "B")])
    assert await log.last_seq() == res.last_seq == (await log.read(WF, "r2"))[-1].seq


async def test_the_run_index_pages_newest_first_across_windows(log: MemoryLog | JetStreamLog) -> None:
    """Runs far apart in the stream (thousands of other records between them) and close
    together: newest first, every run once, in descending sequence, whatever the page size."""
    runs = []
    for i in range(40):
        run = f"run{i:02d}"
        await log.append([msg(run, "sys", "RunStarted")])
        if i % 10 == 9:  # a long stretch of other records
            await log.append([msg("busy", "evt", "Tick") for _ in range(1500)])
        if i % 4 == 0:
            await log.append([msg(run, "sys", "RunCompleted")])
        runs.append(run)
    index = LogRunIndex(log)
    for limit in (1, 3, 50):
        got: list[str] = []
        cursor = 0
        while True:
            page, nxt = await index.list_runs(limit=limit, cursor=cursor, newest_first=True)
            got += [r.run_id for r in page]
            if nxt is None:
                break
            cursor = nxt
        assert got == runs[::-1]
    done, _ = await index.list_runs(status="completed", limit=4, newest_first=True)
    assert [r.run_id for r in done] == ["run36", "run32", "run28", "run24"]
    assert all(r.ended_at is not None for r in done)
