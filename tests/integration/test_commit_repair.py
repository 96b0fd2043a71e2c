"""The ordered idempotent commit (engine/wire/commit.py) on both logs: a commit interrupted part-way is
completed on redelivery with exactly the original messages, once each, and never mixed with a
second execution's output."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import Context, Event, MemoryLog, StartEvent, StopEvent, Workflow, fold, step
from engine.jetstream.log import JetStreamLog
from engine.model.records import OutMessage, RawRecord, StepCompleted
from engine.runtime.executor import Executor
from engine.runtime.inprocess import append_start, start_commit, start_key
from engine.wire.codec import decode_record
from engine.wire.headers import H_COMMIT, message_id, parse_commit_tag
from services.natsserver import EmbeddedNats


class Part(Event):
    i: int
    execution: int


class Note(Event):
    text: str


executions = 0


class Emitter(Workflow):
    @step
    async def fan(self, ctx: Context, ev: StartEvent) -> Part | None:
        global executions
        executions += 1
        await ctx.store.set("execution", executions)
        for i in range(3):
            ctx.send_event(Part(i=i, execution=executions))
        ctx.write_event_to_stream(Note(text=f"execution {executions}"))
        return None

    @step
    async def sink(self, ev: Part) -> StopEvent | None:
        return None


class Crash(Exception):
    pass


class CrashingLog:
    """Wraps a log: the next append of several messages stores only the first ``keep`` of them,
    then fails as a process killed mid-commit would. The full commit is kept in ``intended``."""

    def __init__(self, inner: Any, keep: int) -> None:
        self.inner, self.keep = inner, keep
        self.prefix, self.atomic = inner.prefix, inner.atomic
        self.intended: list[OutMessage] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, messages: Sequence[OutMessage], **options: Any) -> Any:
        if self.keep and len(messages) > 1:
            keep, self.keep = self.keep, 0
            self.intended = list(messages)
            await self.inner.append(messages[:keep], **options)
            raise Crash
        return await self.inner.append(messages, **options)


class FakeDelivery:
    def __init__(self, record: RawRecord, attempt: int) -> None:
        self.record, self.attempt, self.settled = record, attempt, list[str]()

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: timedelta | None = None) -> None:
        self.settled.append("nak")

    async def term(self) -> None:
        self.settled.append("term")

    async def in_progress(self) -> None:
        pass


@pytest.fixture(params=["memory", "jetstream"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryLog()
        return
    async with EmbeddedNats(port=0, store_dir=tmp_path / "nats") as server:
        js_log = await JetStreamLog.connect(server.url)
        try:
            yield js_log
        finally:
            await js_log.close()


def envelope(r: RawRecord | OutMessage) -> tuple[str, bytes, dict[str, str]]:
    """What a message is, as sent; JetStream also keeps the id it was published with, which is
    checked against the commit index it names, and the headers of the publish's checks."""
    headers = {k: v for k, v in r.headers.items() if not k.startswith("Nats-Expected-")}
    msg_id = headers.pop("Nats-Msg-Id", None)
    if msg_id is not None:
        key, index, execution = parse_commit_tag(headers[H_COMMIT])  # type: ignore[misc]
        assert msg_id == message_id(key, index, execution)
    return r.subject, r.data, headers


async def crash_mid_commit(log: Any, run_id: str, keep: int) -> tuple[RawRecord, list[OutMessage]]:
    """Start a run and have a first execution of ``fan`` die after ``keep`` messages of its commit."""
    global executions
    executions = 0
    await append_start(log, "Emitter", run_id, StartEvent())
    start = (await log.read("Emitter", run_id))[1]
    crashing = CrashingLog(log, keep=keep)
    with pytest.raises(Crash):
        await Executor(Emitter(), crashing)._process(Emitter.steps["fan"], FakeDelivery(start, 1))
    assert len(crashing.intended) == 5  # StepCompleted, 3 Parts, the Note
    return start, crashing.intended


def the_commit(records: list[RawRecord], start: RawRecord) -> list[RawRecord]:
    return [r for r in records if r.headers.get("Jl-Trigger") == str(start.seq)]


async def test_redelivery_completes_a_partial_commit_with_the_original_messages(log: Any) -> None:
    start, intended = await crash_mid_commit(log, "r1", keep=2)  # StepCompleted + first Part
    partial = await log.read("Emitter", "r1")
    assert len(the_commit(partial, start)) == 2
    st = fold(decode_record(r, Emitter.events) for r in partial)
    assert st.status == "running" and (start.seq, "fan") in st.done
    assert list(st.incomplete) == [f"r1:{start.seq}:fan"]

    # Another process (empty cache) gets the redelivery.
    other = Executor(Emitter(), log, worker_id="other")
    delivery = FakeDelivery(start, 2)
    await other._process(Emitter.steps["fan"], delivery)
    assert delivery.settled == ["ack"] and executions == 1  # the step did not run again
    assert other.stats.repaired == 3 and other.stats.skipped == 1

    records = await log.read("Emitter", "r1")
    assert [envelope(r) for r in the_commit(records, start)] == [envelope(m) for m in intended]
    tags = [parse_commit_tag(r.headers[H_COMMIT]) for r in the_commit(records, start)]
    assert [t[1] for t in tags] == [0, 1, 2, 3, 4]  # type: ignore[index]
    assert len({t[2] for t in tags}) == 1  # type: ignore[index]  # one execution's messages
    st = fold(decode_record(r, Emitter.events) for r in records)
    assert st.incomplete == {} and st.state == {"execution": 1}

    # A further redelivery finds the commit whole and appends nothing.
    await Executor(Emitter(), log)._process(Emitter.steps["fan"], FakeDelivery(start, 3))
    assert len(await log.read("Emitter", "r1")) == len(records)


async def test_a_second_execution_never_mixes_its_output_into_an_interrupted_commit(log: Any) -> None:
    global executions
    executions = 0
    await append_start(log, "Emitter", "r2", StartEvent())
    start = (await log.read("Emitter", "r2"))[1]
    # A second process that read the run before the first one committed: its view is stale, so
    # it runs the step itself (execution 2) on the same trigger.
    late = Executor(Emitter(), log, worker_id="late")
    await late.runs.get("r2", min_seq=start.seq)
    crashing = CrashingLog(log, keep=3)
    with pytest.raises(Crash):
        await Executor(Emitter(), crashing)._process(Emitter.steps["fan"], FakeDelivery(start, 1))

    await late._process(Emitter.steps["fan"], FakeDelivery(start, 1))
    assert executions == 2 and late.stats.duplicates == 1 and late.stats.repaired == 2

    records = await log.read("Emitter", "r2")
    # A pipelined log may hold the late execution's messages too (sent with its head, which was a
    # duplicate): they are orphans, left out by the fold and never run as triggers.
    st = fold(decode_record(r, Emitter.events) for r in records)
    counted = [r for r in the_commit(records, start) if r.seq not in st.orphans]
    assert [envelope(r) for r in counted] == [envelope(m) for m in crashing.intended]
    orphans = [decode_record(r, Emitter.events).body for r in records if r.seq in st.orphans]
    if isinstance(log, JetStreamLog):  # its publishes of the late commit went out with the head
        assert orphans, "the late execution's messages were expected in the log, as orphans"
    for o in orphans:  # each one the late execution's, none the first's
        assert (isinstance(o, Part) and o.execution == 2) or (isinstance(o, Note) and o.text == "execution 2"), o
    assert not any(isinstance(o, StepCompleted) for o in orphans)  # (its head was refused)
    assert [seq for seq, _ in st.events["Part"]] == [r.seq for r in counted if r.subject.endswith("evt.Part")]
    parts = [decode_record(r, Emitter.events).body for r in counted if r.subject.endswith("evt.Part")]
    assert sorted((p.i, p.execution) for p in parts) == [(0, 1), (1, 1), (2, 1)]
    done = [r for r in (decode_record(x) for x in counted) if isinstance(r.body, StepCompleted)]
    assert len(done) == 1 and done[0].body.worker != "late" and st.incomplete == {}


async def test_an_interrupted_start_is_completed_by_starting_the_run_again(log: Any) -> None:
    first = start_commit(log.prefix, "Emitter", "r3", StartEvent(topic="first"), copy=not log.atomic)
    await log.append(first[:1], idempotency_key=start_key("r3"))  # RunStarted only
    await append_start(log, "Emitter", "r3", StartEvent(topic="second"))
    records = await log.read("Emitter", "r3")
    st = fold(decode_record(r, Emitter.events) for r in records)
    counted = [r for r in records if r.seq not in st.orphans]
    assert [envelope(r) for r in counted] == [envelope(m) for m in first]  # the first start stands
    assert all(b"second" in r.data for r in records if r.seq in st.orphans)
    assert st.incomplete == {} and st.status == "running"
