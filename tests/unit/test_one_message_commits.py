"""One-message commits (``engine.wire.commit``): a step whose only effect is one event, or the run's
end, commits that record alone, and the fold reads the step's completion from it."""

from __future__ import annotations

from engine import Context, Event, MemoryLog, StartEvent, StopEvent, Workflow, fold, step
from engine.model.records import completed_step
from engine.wire.codec import decode_record

WF = "Relay"


class Letter(Event):
    messages: list[str]  # (a field named as a commit head's copy: not taken for one)


class Seen(Event):
    n: int


class Relay(Workflow):
    @step
    async def write(self, ev: StartEvent) -> Letter:
        return Letter(messages=["a", "b"])

    @step
    async def read(self, ctx: Context, ev: Letter) -> Seen:
        return Seen(n=len(ev.messages))

    @step
    async def stamp(self, ctx: Context, ev: Seen) -> StopEvent:
        await ctx.store.set("seen", ev.n)  # a state change: a commit with its StepCompleted
        return StopEvent(result=ev.n)


async def test_a_run_of_one_message_commits_folds_like_any_other() -> None:
    log = MemoryLog()
    handler = Relay(timeout=30, log=log).run()
    assert await handler == 2
    raws = await log.read(WF, handler.run_id)
    shape = [r.subject.split(".", 4)[4] for r in raws]
    assert shape == [
        "sys.RunStarted", "evt.StartEvent",
        "evt.Letter",  # write's whole commit
        "evt.Seen",  # read's whole commit
        "sys.StepCompleted", "sys.RunCompleted",  # stamp's commit: it changed the state
    ]  # fmt: skip
    records = [decode_record(r, Relay.events) for r in raws]
    st = fold(records)
    assert st.status == "completed" and st.steps_completed == 3 and st.state == {"seen": 2}
    assert st.done == {(raws[1].seq, "write"), (raws[2].seq, "read"), (raws[3].seq, "stamp")}
    assert st.incomplete == {} and st.orphans == set()  # Letter.messages is not a commit's copy
    assert [completed_step(r) for r in records if completed_step(r)] == sorted(st.done)
    assert raws[2].headers["Jl-Worker"] and raws[2].headers["Jl-Commit"].endswith("/0")


async def test_a_step_that_only_ends_the_run_commits_its_run_completed_alone() -> None:
    class Short(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="done")

    log = MemoryLog()
    handler = Short(timeout=30, log=log).run()
    assert await handler == "done"
    raws = await log.read("Short", handler.run_id)
    assert [r.subject.split(".", 4)[4] for r in raws] == ["sys.RunStarted", "evt.StartEvent", "sys.RunCompleted"]
    st = fold(decode_record(r) for r in raws)
    assert st.status == "completed" and st.done == {(raws[1].seq, "only")} and st.steps_completed == 1
