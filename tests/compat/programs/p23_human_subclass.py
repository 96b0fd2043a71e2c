"""Subclasses of InputRequiredEvent / HumanResponseEvent with their own fields, returned by a
step (valid with no step accepting them)."""

from workflows import Workflow, step
from workflows.events import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent


class AskApproval(InputRequiredEvent):
    amount: int
    reason: str


class Approval(HumanResponseEvent):
    approved: bool


class ApprovalFlow(Workflow):
    @step
    async def request(self, ev: StartEvent) -> AskApproval:
        return AskApproval(amount=ev.amount, reason="expense")

    @step
    async def decide(self, ev: Approval) -> StopEvent:
        return StopEvent(result="paid" if ev.approved else "refused")


async def main(run):
    out = []
    for amount in (10, 5000):
        handler = await run(ApprovalFlow(timeout=10), amount=amount)
        async for ev in handler.stream_events():
            if isinstance(ev, AskApproval):
                out.append([ev.amount, ev.reason])
                handler.ctx.send_event(Approval(approved=ev.amount < 100))
        out.append(await handler)
    return out
