"""Rollback, fork, state at N and the version check, on the memory log with a running executor;
the resulting logs are checked record by record."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from engine import MemoryLog, StartEvent, StopEvent, Workflow, step
from engine.model.errors import InvalidSequenceError, RunConflictError, WorkflowVersionError
from engine.model.records import (
    RawRecord,
    Record,
    RolledBack,
    RunStarted,
    StepCompleted,
    completed_step,
)
from engine.runtime.commands import append_event, event_payload
from engine.runtime.executor import Executor
from engine.runtime.inprocess import append_start
from engine.runtime.replay import check
from engine.runtime.timetravel import accepts_of, fork, pending_triggers, rollback, state_at
from engine.state.fold import RunState
from engine.wire.codec import decode_record
from engine.wire.headers import H_COMMIT, H_NEW_RUN, H_TRIGGER, parse_commit_tag
from tests.workflows import Chain3, Parsed

WF = "Chain3"


def tag(r: RawRecord) -> tuple[str, int]:
    """``(commit key, index)`` of a record's ``Jl-Commit`` (its execution id left out)."""
    parsed = parse_commit_tag(r.headers[H_COMMIT])
    assert parsed is not None
    return parsed[0], parsed[1]


@contextlib.asynccontextmanager
async def executor(wf: Workflow, log: MemoryLog, **kwargs: object) -> AsyncIterator[Executor]:
    ex = Executor(wf, log, **kwargs)  # type: ignore[arg-type]
    await ex.start()
    try:
        yield ex
    finally:
        await ex.stop(grace=0)


async def until(log: MemoryLog, run_id: str, done: Callable[[list[RawRecord]], bool], timeout: float = 5.0) -> list[RawRecord]:
    """The run's records once ``done(records)`` holds (waits on appends, no polling)."""
    seen: list[RawRecord] = list(await log.read(WF, run_id))
    if done(seen):
        return seen
    async with asyncio.timeout(timeout):
        async for raw in log.follow(WF, run_id, after_seq=seen[-1].seq if seen else 0):
            seen.append(raw)
            if done(seen):
                return seen
    raise AssertionError("unreachable")


def ended(records: list[RawRecord]) -> bool:
    return sum(r.subject.endswith("sys.RunCompleted") for r in records) >= 1


def shape(records: list[RawRecord]) -> list[str]:
    return [".".join(r.subject.rsplit(".", 2)[1:]) for r in records]


def decoded(records: list[RawRecord]) -> list[Record]:
    return [decode_record(r, Chain3.events) for r in records]


async def finished_run(log: MemoryLog, run_id: str = "r1", *, fresh: bool = False) -> list[RawRecord]:
    await append_start(log, WF, run_id, StartEvent(text="a b c"), fresh=fresh)
    return await until(log, run_id, ended)


CHAIN = [
    "sys.RunStarted", "evt.StartEvent",
    "sys.StepCompleted", "evt.Parsed", "out.Progress",
    "sys.StepCompleted", "evt.Counted", "out.Progress",
    "sys.RunCompleted",  # finish's whole commit (a one-message commit, engine.wire.commit)
]  # fmt: skip


async def test_state_at_n_is_the_fold_of_the_prefix() -> None:
    log = MemoryLog()
    async with executor(Chain3(), log):
        raws = await finished_run(log)
    assert shape(raws) == CHAIN
    recs = decoded(raws)
    at = state_at(recs, raws[4].seq)  # after parse's commit
    assert at.status == "running" and at.state == {"source": "a b c"}
    assert at.done == {(raws[1].seq, "parse")}
    assert pending_triggers(at, accepts_of(Chain3)) == [(raws[3].seq, "count")]
    assert state_at(recs, raws[-1].seq).status == "completed"


async def test_rollback_reruns_the_pending_step_and_keeps_the_history() -> None:
    log = MemoryLog()
    async with executor(Chain3(), log):
        raws = await finished_run(log)
        parsed_seq, to_seq = raws[3].seq, raws[4].seq
        res = await rollback(log, WF, "r1", to_seq, accepts=accepts_of(Chain3), reason="test")
        assert res.pending == [(parsed_seq, "count")] and res.epoch == 1
        after = await until(log, "r1", lambda rs: sum(r.subject.endswith("RunCompleted") for r in rs) == 2)
    assert shape(after) == CHAIN + [
        "sys.RolledBack", "cmd.count",
        "sys.StepCompleted", "evt.Counted", "out.Progress",
        "sys.RunCompleted",
    ]  # fmt: skip
    new = after[len(CHAIN) :]
    marker = decode_record(new[0]).body
    assert marker == RolledBack(to_seq=to_seq, epoch=1, reason="test", pending=[(parsed_seq, "count")])
    resume = decode_record(new[1]).body
    assert (resume.step, resume.trigger, resume.reason, resume.wait) == ("count", parsed_seq, "rollback", None)
    rerun = decode_record(new[2]).body
    assert isinstance(rerun, StepCompleted) and (rerun.step, rerun.trigger) == ("count", parsed_seq)
    assert tag(new[2]) == (f"r1:{parsed_seq}:count@1", 0)  # a new key: not a duplicate
    assert tag(new[5]) == (f"r1:{new[3].seq}:finish@1", 0)
    assert after[: len(CHAIN)] == raws  # history untouched
    st = RunState()
    for rec in decoded(after):
        st.apply(rec)
    assert st.status == "completed" and st.epoch == 1
    assert st.rollbacks == [(to_seq, new[0].seq)]
    assert st.result is not None and st.result.trigger == new[3].seq  # the rerun's Counted
    assert st.steps_completed == 3  # parse, and count + finish once each after the rollback
    assert (raws[6].seq, "finish") not in st.done  # undone


async def test_rollback_rejects_bad_points() -> None:
    log = MemoryLog()
    async with executor(Chain3(), log):
        raws = await finished_run(log)
    accepts = accepts_of(Chain3)
    with pytest.raises(InvalidSequenceError, match="not a record"):
        await rollback(log, WF, "r1", 10_000, accepts=accepts)
    with pytest.raises(InvalidSequenceError, match="before the run's start event"):
        await rollback(log, WF, "r1", raws[0].seq, accepts=accepts)
    with pytest.raises(InvalidSequenceError, match="inside commit r1:"):
        await rollback(log, WF, "r1", raws[3].seq, accepts=accepts)  # parse's commit continues
    with pytest.raises(RunConflictError, match="already ended"):
        await rollback(log, WF, "r1", raws[-1].seq, accepts=accepts)


async def test_fork_copies_the_prefix_remapped_and_runs_on() -> None:
    log = MemoryLog()
    async with executor(Chain3(), log):
        raws = await finished_run(log)
        at = raws[7].seq  # after count's commit: finish is pending
        res = await fork(log, WF, "r1", at, "r2")
        forked = await until(log, "r2", ended)
    assert await log.read(WF, "r1") == raws  # the original is untouched
    assert res.records == 8 and list(res.seq_map) == [r.seq for r in raws[:8]]
    assert shape(forked) == CHAIN[:8] + ["sys.RunForked", "sys.RunCompleted"]
    m = res.seq_map
    recs = decoded(forked)
    assert recs[0].body == RunStarted(
        workflow=WF, run_id="r2", start_event="StartEvent",
        messages=decode_record(raws[0]).body.messages, forked_from="r1", forked_at=at,
    )  # fmt: skip
    for old, new in zip(raws[:8], forked[:8], strict=True):
        assert new.seq == m[old.seq]
        if ".evt." in old.subject or ".out." in old.subject:
            assert new.data == old.data
        if H_TRIGGER in old.headers:
            assert new.headers[H_TRIGGER] == str(m[int(old.headers[H_TRIGGER])])
    commits = ["/".join(map(str, tag(r))) for r in forked[:8]]
    p, c = forked[1].seq, forked[3].seq  # the fork's StartEvent and Parsed
    assert commits == [
        "r2:start/0", "r2:start/1",
        f"r2:{p}:parse/0", f"r2:{p}:parse/1", f"r2:{p}:parse/2",
        f"r2:{c}:count/0", f"r2:{c}:count/1", f"r2:{c}:count/2",
    ]  # fmt: skip
    assert [done for c in recs if (done := completed_step(c)) is not None] == [
        (forked[1].seq, "parse"), (forked[3].seq, "count"), (forked[6].seq, "finish"),
    ]  # fmt: skip
    assert recs[-1].body.trigger == forked[6].seq
    st = RunState()
    for rec in recs:
        st.apply(rec)
    assert st.status == "completed" and st.result is not None
    assert st.result.event["result"] == {"n": 3, "source": "a b c"}


async def test_a_fork_of_a_run_started_as_new_does_not_start_over() -> None:
    """A run whose id its starter made (``fresh``) marks its start event ``Jl-New-Run``, so the
    first step's worker folds it without a read; the fork's copy of that event must not carry the
    mark, or the worker would take the fork for a new run and run its first step again."""
    log = MemoryLog()
    async with executor(Chain3(), log):
        raws = await finished_run(log, fresh=True)
        assert H_NEW_RUN in raws[1].headers
        await fork(log, WF, "r1", raws[7].seq, "r2")  # after count's commit: finish is pending
        forked = await until(log, "r2", ended)
    assert all(H_NEW_RUN not in r.headers for r in forked)
    assert shape(forked) == CHAIN[:8] + ["sys.RunForked", "sys.RunCompleted"]


async def test_fork_into_an_existing_run_is_a_conflict() -> None:
    log = MemoryLog()
    async with executor(Chain3(), log):
        raws = await finished_run(log)
        await finished_run(log, "r9")
    with pytest.raises(RunConflictError, match="already exists"):
        await fork(log, WF, "r1", raws[4].seq, "r9")


class Split(Workflow):
    """Chain3 after a refactor: its steps renamed, Counted gone."""

    workflow_name = "Chain3"

    @step
    async def split(self, ev: StartEvent) -> Parsed:
        return Parsed(words=ev.text.split())

    @step
    async def tally(self, ev: Parsed) -> StopEvent:
        return StopEvent(result=len(ev.words))


async def test_a_mismatched_class_fails_the_run_naming_what_differs() -> None:
    log = MemoryLog()
    async with executor(Chain3(), log):
        raws = await finished_run(log)
    with pytest.raises(WorkflowVersionError) as info:
        check(Split, decoded(raws), run_id="r1")
    assert info.value.missing_steps == ["count", "finish", "parse"]
    assert info.value.unknown_events == ["Counted"]
    assert "count, finish, parse" in str(info.value) and "Counted" in str(info.value)
    check(Chain3, decoded(raws))  # the class that wrote it matches

    # a run half done by the old version, picked up by the new one
    await append_start(log, WF, "r5", StartEvent(text="x y"))
    async with executor(Chain3(), log, steps=["parse"]):
        await until(log, "r5", lambda rs: any(r.subject.endswith("StepCompleted") for r in rs))
    async with executor(Split(), log):
        records = await until(log, "r5", lambda rs: any(r.subject.endswith("RunFailed") for r in rs))
    failed = decode_record(records[-1]).body
    assert failed.error_type == "engine.model.errors.WorkflowVersionError"
    assert "steps in the log that Split lacks: parse" in failed.message


async def test_an_answer_sent_before_the_wait_is_recorded_is_not_a_version_difference() -> None:
    # An outside event that only a (not yet recorded) wait would take, e.g. a HumanResponseEvent
    # sent right after the start, is in the log before any StepSuspended names its type.
    log = MemoryLog()
    await append_start(log, WF, "r7", StartEvent(text="x"))
    await append_event(log, WF, "r7", "Answer", event_payload("Answer", {"response": "yes"}))
    check(Chain3, decoded(await log.read(WF, "r7")), run_id="r7")  # no WorkflowVersionError

    # a start event of a type the class no longer takes still is one
    class RetiredStart(StartEvent):
        text: str

    await append_start(log, WF, "r8", RetiredStart(text="x"))
    with pytest.raises(WorkflowVersionError) as info:
        check(Chain3, decoded(await log.read(WF, "r8")), run_id="r8")
    assert info.value.unknown_events == ["RetiredStart"]
