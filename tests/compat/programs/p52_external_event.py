"""An event of the program's own type sent into a running run from outside, with
handler.ctx.send_event, to a step waiting for it with ctx.wait_for_event."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Ready(Event):
    pass


class Payment(Event):
    amount: int
    currency: str = "EUR"


class ExternalEventFlow(Workflow):
    @step
    async def checkout(self, ctx: Context, ev: StartEvent) -> StopEvent:
        payment = await ctx.wait_for_event(Payment, waiter_event=Ready(), waiter_id="pay")
        return StopEvent(result=f"{ev.order}: paid {payment.amount} {payment.currency}")


async def main(run):
    handler = await run(ExternalEventFlow(timeout=10), order="o-1")
    async for ev in handler.stream_events():
        if isinstance(ev, Ready):
            handler.ctx.send_event(Payment(amount=30))
    return await handler
