"""Event fields of richer types (datetime, Enum, Literal, tuple, set, dict of models) keep their
types from the step that sends them to the step that receives them."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel
from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Priority(StrEnum):
    LOW = "low"
    HIGH = "high"


class Owner(BaseModel):
    name: str


class Ticket(Event):
    opened: datetime
    priority: Priority
    kind: Literal["bug", "feature"]
    span: tuple[int, int]
    labels: set[str]
    owners: dict[str, Owner]


class FieldTypesFlow(Workflow):
    @step
    async def open(self, ev: StartEvent) -> Ticket:
        return Ticket(
            opened=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            priority=Priority.HIGH,
            kind="bug",
            span=(3, 9),
            labels={"ui", "crash"},
            owners={"lead": Owner(name="ada")},
        )

    @step
    async def triage(self, ev: Ticket) -> StopEvent:
        return StopEvent(
            result={
                "opened": [type(ev.opened).__name__, ev.opened.isoformat()],
                "priority": [type(ev.priority).__name__, ev.priority.value],
                "kind": ev.kind,
                "span": [type(ev.span).__name__, list(ev.span)],
                "labels": [type(ev.labels).__name__, sorted(ev.labels)],
                "owner": [type(ev.owners["lead"]).__name__, ev.owners["lead"].name],
            }
        )


async def main(run):
    return await (await run(FieldTypesFlow(timeout=10)))
