"""Version check: does a workflow class still match a run's log?

A run's log names steps (in its engine records and ``cmd.<step>`` subjects) and event types (its
``evt`` subjects). Replaying it with a class that lacks one of those steps, that neither accepts
nor produces one of those events, or whose event types no longer decode the stored payloads, would
silently go wrong (llama-index-workflows has no such check; Temporal raises a nondeterminism
error). ``check`` raises ``WorkflowVersionError`` naming every difference; the executor calls it
when it first loads a run and fails the run with it.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.model.errors import WorkflowVersionError
from engine.model.records import (
    Record,
    RunCompleted,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepSuspended,
)
from engine.runtime.spec import WorkflowDefinition

__all__ = ["check", "differences"]


def differences(
    cls: type[WorkflowDefinition], records: Iterable[Record]
) -> tuple[list[str], list[str], list[tuple[int, str, str]]]:
    """What in ``records`` (decoded with ``cls.events``) the class does not match (pure).

    Returns:
        ``(missing_steps, unknown_events, undecodable)``: step names the log uses that
        ``cls.steps`` lacks (sorted); event types of ``evt`` records (written by a step, or the
        run's start event) that no step of ``cls`` accepts or produces and that no step of the run
        awaited (``StepSuspended.event_type``) (sorted); and ``(seq, type, error)`` of events
        written by a step that no longer decode. An event sent from outside other than the start
        is not a difference: it may be the answer to a wait not recorded yet (sent right after
        the run started), and one that no step ever takes is simply never delivered.
    """
    steps: set[str] = set()
    events: set[str] = set()
    awaited: set[str] = set()
    start: str | None = None  # the run's start event name (RunStarted comes first)
    undecodable: list[tuple[int, str, str]] = []
    for rec in records:
        if rec.kind == "cmd":
            steps.add(rec.type)
        elif rec.kind == "evt":
            if rec.step is not None or start is None or rec.type == start:
                events.add(rec.type)
            if rec.step is not None:  # emitted by a step (the whole commit of a one-message one)
                steps.add(rec.step)
            if rec.error is not None and rec.step is not None:
                undecodable.append((rec.seq, rec.type, rec.error))
        elif rec.kind == "sys" and isinstance(rec.body, RunStarted):
            start = rec.body.start_event
        elif rec.kind == "sys" and isinstance(rec.body, StepCompleted | StepFailed | StepSuspended | RunCompleted):
            steps.add(rec.body.step)
            if isinstance(rec.body, StepSuspended) and rec.body.event_type:
                awaited.add(rec.body.event_type)
    known = set(cls.events) | awaited
    return sorted(steps - set(cls.steps)), sorted(events - known), undecodable


def check(cls: type[WorkflowDefinition], records: Iterable[Record], *, run_id: str | None = None) -> None:
    """Raise if ``cls`` cannot replay the run whose (decoded) records these are.

    Raises:
        WorkflowVersionError: naming the steps the class lacks, the event types it does not know
            and the events it cannot decode (``missing_steps``, ``unknown_events``,
            ``undecodable`` on the error).
    """
    missing, unknown, undecodable = differences(cls, records)
    if not (missing or unknown or undecodable):
        return
    parts = []
    if missing:
        parts.append(f"steps in the log that {cls.__name__} lacks: {', '.join(missing)}")
    if unknown:
        parts.append(f"event types in the log that {cls.__name__} neither accepts nor produces: {', '.join(unknown)}")
    for seq, type_name, error in undecodable[:5]:
        parts.append(f"event {type_name} at seq {seq} no longer decodes: {error}")
    where = f"run {run_id}" if run_id else "the run"
    raise WorkflowVersionError(
        f"{cls.workflow_name}: {where} was written by another version of the workflow; " + "; ".join(parts),
        run_id=run_id,
        missing_steps=missing,
        unknown_events=unknown,
        undecodable=undecodable,
    )
