"""Two executions of one commit: the fold counts the messages of the execution whose head stands
and leaves the other's out (``engine.wire.commit``, step 3), whatever order the log holds them in."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable

from engine import Context, Event, MemoryLog, StartEvent, StopEvent, Workflow, fold, step
from engine.model.events import encode_event
from engine.model.records import OutMessage, RawRecord, StepCompleted
from engine.runtime.commands import start_messages
from engine.runtime.executor import Executor
from engine.runtime.inprocess import append_start
from engine.state.fold import RunState
from engine.state.orphans import OrphanFilter
from engine.wire.codec import decode_record, encode
from engine.wire.commit import copy_of, tag_commit
from engine.wire.headers import (
    H_COMMIT,
    H_RUN,
    H_STEP,
    H_TRIGGER,
    H_TYPE,
    commit_key,
    parse_commit_tag,
)
from engine.wire.subjects import run_subject
from tests.integration.procs import eventually

WF = "Pair"


class Item(Event):
    n: int


class Pair(Workflow):
    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Item:
        return Item(n=1)

    @step
    async def use(self, ctx: Context, ev: Item) -> StopEvent:
        calls.append(ev.n)
        return StopEvent(result=ev.n)


calls: list[int] = []
EVENTS = {"StartEvent": StartEvent, "Item": Item}


def execution(run_id: str, trigger: int, n: int, *, count: int = 1) -> list[OutMessage]:
    """One execution of ``split`` on ``trigger``: its StepCompleted (state ``n = n``) and
    ``count`` Items of value ``n``, tagged as a pipelined commit."""
    base = {H_RUN: run_id, H_STEP: "split", H_TRIGGER: str(trigger)}
    out = [
        OutMessage(run_subject("jetloom", WF, run_id, "evt", "Item"), encode_event(Item(n=n)), {**base, H_TYPE: "Item"})
        for _ in range(count)
    ]
    done = StepCompleted(step="split", trigger=trigger, emitted=["Item"] * count, state={"n": n}, messages=copy_of(out, base))
    head = OutMessage(run_subject("jetloom", WF, run_id, "sys", "StepCompleted"), encode(done), {**base, H_TYPE: "StepCompleted"})
    return tag_commit([head, *out], commit_key(run_id, trigger, "split"))


def stored(messages: Iterable[OutMessage], first_seq: int = 1) -> list[RawRecord]:
    return [RawRecord(seq, m.subject, m.headers, m.data, seq) for seq, m in enumerate(messages, first_seq)]


def folded(raws: list[RawRecord]) -> RunState:
    return fold(decode_record(r, EVENTS) for r in raws)


def start() -> list[OutMessage]:
    return start_messages("jetloom", WF, "r1", "StartEvent", encode_event(StartEvent()))


async def _terminal(st: Awaitable[RunState]) -> bool:
    return (await st).terminal


def items(st: RunState) -> list[int]:
    return [seq for seq, _ in st.events.get("Item", [])]


def test_the_losers_messages_after_the_winners_head_are_orphans() -> None:
    winner, loser = execution("r1", 2, n=1), execution("r1", 2, n=2, count=2)
    # the loser's head was a duplicate (not stored); its Items raced the winner's
    raws = stored([*start(), winner[0], loser[1], loser[2], winner[1]])
    st = folded(raws)
    assert st.state == {"n": 1} and st.steps_completed == 1
    assert items(st) == [raws[5].seq]
    assert st.orphans == {raws[3].seq, raws[4].seq}
    assert st.incomplete == {}


def test_messages_of_a_refused_head_are_orphans_and_the_retry_counts() -> None:
    refused, retry = execution("r1", 2, n=1), execution("r1", 2, n=1)
    raws = stored([*start(), refused[1], retry[0], retry[1]])  # the head failed its check
    st = folded(raws)
    assert st.orphans == {raws[2].seq}
    assert items(st) == [raws[4].seq] and st.incomplete == {}


def test_an_interrupted_commit_stays_incomplete_until_its_own_messages_arrive() -> None:
    winner, loser = execution("r1", 2, n=1, count=2), execution("r1", 2, n=2, count=2)
    raws = stored([*start(), winner[0], winner[1], loser[2]])
    st = folded(raws)
    key = commit_key("r1", 2, "split")
    assert list(st.incomplete) == [key] and st.orphans == {raws[4].seq}
    indices, missing = st.incomplete[key].missing("jetloom", WF, "r1")
    assert indices == [2] and missing[0].headers[H_COMMIT] == winner[2].headers[H_COMMIT]
    st.apply(decode_record(stored(missing, raws[-1].seq + 1)[0], EVENTS))
    assert st.incomplete == {} and len(items(st)) == 2


def test_a_rollback_refold_and_a_snapshot_keep_the_orphans_out() -> None:
    from engine.model.records import RolledBack
    from engine.state.snapshots import decode_snapshot, encode_snapshot

    winner, loser = execution("r1", 2, n=1), execution("r1", 2, n=2)
    raws = stored([*start(), winner[0], loser[1], winner[1]])  # seqs 1-5: 4 is the loser's Item
    later = OutMessage(run_subject("jetloom", WF, "r1", "evt", "Item"), encode_event(Item(n=9)), {H_RUN: "r1", H_TYPE: "Item"})
    marker = OutMessage(
        run_subject("jetloom", WF, "r1", "sys", "RolledBack"), encode(RolledBack(to_seq=5, epoch=1)), {H_RUN: "r1", H_TYPE: "RolledBack"}
    )
    raws += stored([later, marker], 6)  # roll back to 5: the Item at 6 no longer counts
    st = folded(raws)
    assert st.epoch == 1 and st.rollbacks  # the marker was folded: the run was refolded
    assert st.orphans == {4} and items(st) == [5] and st.state == {"n": 1}
    back = decode_snapshot(encode_snapshot(st))
    assert back is not None and back.orphans == {4} and items(back) == [5]


def test_commits_without_execution_ids_fold_as_before() -> None:
    old = [
        OutMessage(m.subject, m.data, {**m.headers, H_COMMIT: m.headers[H_COMMIT].rpartition(":")[0]})
        for m in execution("r1", 2, n=1)
    ]
    assert parse_commit_tag(old[1].headers[H_COMMIT])[2] is None  # type: ignore[index]
    st = folded(stored([*start(), *old]))
    assert st.orphans == set() and len(items(st)) == 1 and st.incomplete == {}


async def test_an_orphan_is_never_run_as_a_trigger() -> None:
    calls.clear()
    log = MemoryLog()
    await append_start(log, WF, "r1", StartEvent())
    trigger = (await log.read(WF, "r1"))[1].seq
    winner, loser = execution("r1", trigger, n=7), execution("r1", trigger, n=8)
    await log.append(winner[:1], idempotency_key=commit_key("r1", trigger, "split"))
    await log.append(loser[1:])  # as a pipelined log may store them: after the winner's head
    await log.append(winner[1:])
    executor = Executor(Pair(), log)
    await executor.start()

    async def state() -> RunState:
        return fold(decode_record(r, EVENTS) for r in await log.read(WF, "r1"))

    try:
        await eventually(lambda: _terminal(state()), timeout=10, what="the run ends")
    finally:
        await executor.stop()
    st = await state()
    assert st.status == "completed" and st.result is not None and st.result.event["result"] == 7
    assert calls == [7] and executor.stats.skipped >= 1


def test_readers_filter_agrees_with_the_fold() -> None:
    winner, loser, refused, retry = (execution("r1", 2, n=1, count=2), execution("r1", 2, n=2, count=2),
                                     execution("r1", 9, n=3), execution("r1", 9, n=3))
    raws = stored([*start(), winner[0], loser[1], winner[1], refused[1], loser[2], winner[2], retry[0], retry[1]])
    st = folded(raws)
    flt = OrphanFilter()
    assert [r.seq for r in raws if not flt.counts(r)] == sorted(st.orphans)
    assert len(st.orphans) == 3
