"""Workflows the browser tests run in worker processes (importable as ``tests.browser.flows``)."""

from __future__ import annotations

from engine import Context, Event, StartEvent, StopEvent, Workflow, step


class SignupStart(StartEvent):
    """A start event with one field of each kind the start form renders."""

    name: str
    age: int
    newsletter: bool = False
    score: float | None = None
    tags: list[str] = []


class Signup(Workflow):
    """Ends at once with its start event's fields."""

    @step
    async def register(self, ev: SignupStart) -> StopEvent:
        return StopEvent(
            result={"name": ev.name, "age": ev.age, "newsletter": ev.newsletter, "score": ev.score, "tags": ev.tags}
        )


class Decision(Event):
    approved: bool


class Approve(Workflow):
    """Waits (``ctx.wait_for_event``, durably) for a ``Decision`` sent from outside, then ends."""

    @step
    async def decide(self, ctx: Context, ev: StartEvent) -> StopEvent:
        got = await ctx.wait_for_event(Decision, timeout=600)
        return StopEvent(result={"approved": got.approved})
