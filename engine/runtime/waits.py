"""Durable waits: ``ctx.wait_for_event`` and ``ctx.sleep`` suspend a step in the log.

A step that waits for something the log does not hold yet raises ``Suspend`` (inside the engine;
user code never sees it). The executor then records ``sys.StepSuspended`` and acks the trigger:
no worker holds the step while it waits. What ends the wait is a ``cmd.<step>`` record,
``Resume``, that the step's own consumer delivers:

- a timer (``ctx.sleep``, or the timeout of an event wait) is a message schedule on the run's
  ``sch.<name>`` subject whose target is the ``cmd.<step>`` subject (``EventLog.schedule``);
- an awaited event is matched to the wait by ``resolve_waits`` (after the event is appended from
  outside, and after a wait is recorded, so whichever comes second finds the other).

On ``Resume`` the step runs again from its start, on the same trigger; every wait it already
passed returns at once from the log (the fold's ``resolved``), so the step's code must make the
same waits in the same order (like Temporal workflow code). Each event resolves at most one wait:
the ``Resume`` it causes is appended under the idempotency key ``<run>:ev:<event seq>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.model.events import TAG_FIELD, Event, event_fields
from engine.model.records import OutMessage, Record, Resume, ResumeEvent, StepSuspended
from engine.ports.log import EventLog
from engine.runtime import tracing
from engine.state.fold import RunState
from engine.wire.codec import decode_record, encode
from engine.wire.headers import H_RUN, H_STEP, H_TRIGGER, H_TYPE
from engine.wire.subjects import check_token, run_subject

__all__ = ["StepWaits", "Suspend", "match_waits", "resolve_waits", "resume_message"]


class Suspend(BaseException):
    """Raised by a waiting context call to stop the step until the wait is resolved. A
    ``BaseException``, so that a step's ``except Exception`` does not swallow it."""

    def __init__(self, record: StepSuspended, waiter_event: Event | None = None) -> None:
        super().__init__(f"step {record.step} waits ({record.kind} {record.wait})")
        self.record = record
        self.waiter_event = waiter_event


class StepWaits:
    """The waits one execution of a step makes, in order (a ``Context`` holds one; so does a
    child-workflow call, ``engine.runtime.children.run_child``, through it).

    Attributes:
        run_id / step / trigger: the step execution: run, step name, trigger's stream sequence.
        attempt: the 1-based attempt this execution is (recorded in its ``StepSuspended``).
    """

    __slots__ = ("run_id", "step", "trigger", "attempt", "_run", "_count")

    def __init__(
        self, *, run_id: str, step: str, trigger: int, attempt: int, run: RunState | None
    ) -> None:
        self.run_id = run_id
        self.step = step
        self.trigger = trigger
        self.attempt = attempt
        self._run = run  # the run as folded now (waits and their resolutions)
        self._count = 0

    def next_id(self, given: str | None) -> str:
        """The id of the next wait: ``given`` (checked as a subject token), else ``w<n>`` for
        the n-th wait of this execution.

        Raises:
            ValueError: ``given`` is not a subject token.
        """
        self._count += 1
        return check_token(given, "waiter_id") if given is not None else f"w{self._count}"

    def lookup(self, wait: str) -> tuple[Resume | None, StepSuspended | None]:
        """``(resolution, suspension)`` of wait ``wait`` in the run as folded: what resolved it
        (``None``: not resolved yet) and its recorded ``StepSuspended`` (``None``: not recorded)."""
        if self._run is None:
            return None, None
        key = (self.trigger, self.step, wait)
        found = self._run.waits.get(key)
        return self._run.resolved.get(key), (found[1] if found is not None else None)


def resume_message(
    prefix: str, workflow: str, run_id: str, resume: Resume, *, trace_of: Mapping[str, str] | None = None
) -> OutMessage:
    """The ``cmd.<step>`` record that resumes a suspended step. Its trace context
    (``engine.runtime.tracing``): that of ``trace_of`` (the headers of the step's trigger) when
    given, else the current span's, if any."""
    headers = {H_RUN: run_id, H_STEP: resume.step, H_TRIGGER: str(resume.trigger), H_TYPE: "Resume"}
    if trace_of is not None:
        tracing.carry(trace_of, headers)
    elif tracing.traced():  # (the resumed step's span is a child of the span that resumes it)
        tracing.inject(headers)
    return OutMessage(run_subject(prefix, workflow, run_id, "cmd", resume.step), encode(resume), headers)


def _fields(rec: Record) -> dict[str, Any] | None:
    body = rec.body
    if isinstance(body, Event):
        return event_fields(body)
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k != TAG_FIELD}
    return None


def _matches(wait: StepSuspended, fields: Mapping[str, Any]) -> bool:
    return all(fields.get(k) == v for k, v in wait.requirements.items())


def match_waits(state: RunState, records: Sequence[Record]) -> list[Resume]:
    """Pair open event waits with unclaimed events (pure): waits in the order they were recorded,
    each taking the earliest event of its type, after its trigger, whose fields meet its
    requirements and that no other wait took."""
    waits = state.open_event_waits()
    if not waits:
        return []
    taken = set(state.claimed)
    out: list[Resume] = []
    for _, wait in waits:
        for rec in records:
            if (
                rec.kind != "evt"
                or rec.type != wait.event_type
                or rec.seq <= wait.trigger
                or rec.seq in taken
                or rec.error is not None
            ):
                continue
            fields = _fields(rec)
            if fields is None or not _matches(wait, fields):
                continue
            taken.add(rec.seq)
            out.append(
                Resume(
                    step=wait.step,
                    trigger=wait.trigger,
                    reason="event",
                    wait=wait.wait,
                    event=ResumeEvent(type=rec.type, seq=rec.seq, data=fields),
                )
            )
            break
    return out


async def resolve_waits(log: EventLog, workflow: str, run_id: str) -> int:
    """Resume every open event wait of the run that an event in its log satisfies; returns how
    many ``Resume`` records were appended (a repeat of an earlier call appends nothing new)."""
    raws = await log.read(workflow, run_id)
    # events as plain fields: an awaited event's class need not be known here, and another class
    # of the same name elsewhere in the process must not be used to decode it
    records = [decode_record(r, typed=False) for r in raws]
    state = RunState(workflow, run_id)
    for rec in records:
        state.apply(rec)
    if state.terminal:
        return 0
    appended = 0
    for resume in match_waits(state, records):
        assert resume.event is not None
        # (the resumed execution's span: a child of the span current here, a step's or an
        # event sender's; with none, a sibling of the execution that waited, in the run's trace)
        trigger = None if tracing.traced() else next((r.headers for r in raws if r.seq == resume.trigger), None)
        res = await log.append(
            [resume_message(log.prefix, workflow, run_id, resume, trace_of=trigger)],
            idempotency_key=f"{run_id}:ev:{resume.event.seq}",
        )
        appended += res.count
    return appended
