"""Fan-out with ctx.send_event and num_workers, fan-in with ctx.collect_events (the docs'
concurrency pattern). The collected results are sorted: their order follows which worker
finishes first, in the reference as in jetloom."""

import asyncio

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Job(Event):
    n: int


class JobDone(Event):
    n: int
    square: int


class FanFlow(Workflow):
    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Job | None:
        await ctx.store.set("jobs", ev.jobs)
        for n in range(ev.jobs):
            ctx.send_event(Job(n=n))
        return None

    @step(num_workers=4)
    async def work(self, ev: Job) -> JobDone:
        await asyncio.sleep(0.01 * (ev.n % 3))
        return JobDone(n=ev.n, square=ev.n * ev.n)

    @step
    async def join(self, ctx: Context, ev: JobDone) -> StopEvent | None:
        jobs = await ctx.store.get("jobs")
        done = ctx.collect_events(ev, [JobDone] * jobs)
        if done is None:
            return None
        return StopEvent(result=sorted(d.square for d in done))


async def main(run):
    return await (await run(FanFlow(timeout=20), jobs=8))
