"""Workflows of the run page's browser test (tests/browser/test_run_page.py), served by real worker
processes: a fan-out whose parts retry and sleep on durable timers, then a fan-in that waits for a
person's answer."""

from __future__ import annotations

from engine import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)


class ReviewStart(StartEvent):
    parts: int = 3


class Ask(InputRequiredEvent):
    prompt: str


class Verdict(HumanResponseEvent):
    """What the reviewer answers: every input kind of the page's form."""

    text: str
    score: int = 0
    approved: bool = False
    notes: list[str] = []


class Part(Event):
    n: int


class Checked(Event):
    n: int


class Review(Workflow):
    """Fans out ``parts`` checks (part 0 fails once and is retried; each sleeps a little on a
    durable timer), gathers them, then waits for a ``Verdict`` and ends with it."""

    @step
    async def split(self, ctx: Context, ev: ReviewStart) -> Part | None:
        await ctx.store.set("parts", ev.parts)
        for n in range(ev.parts):
            ctx.send_event(Part(n=n))
        return None

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=0.2), num_workers=4)
    async def check(self, ctx: Context, ev: Part) -> Checked:
        if ev.n == 0 and ctx.retry_info().retry_number == 0:
            raise RuntimeError("flaky check")
        await ctx.sleep(0.1 + 0.1 * ev.n)
        await ctx.store.set(f"checked.part{ev.n}", True)
        return Checked(n=ev.n)

    @step
    async def gather(self, ctx: Context, ev: Checked) -> StopEvent | None:
        if ctx.collect_events(ev, [Checked] * await ctx.store.get("parts")) is None:
            return None
        verdict = await ctx.wait_for_event(Verdict, waiter_event=Ask(prompt="approve?"), timeout=600)
        return StopEvent(result={"text": verdict.text, "score": verdict.score, "approved": verdict.approved})
