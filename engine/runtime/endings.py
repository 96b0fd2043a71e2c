"""What follows the end of a run, and the cancel command that ends one.

Whoever appends a run's terminal record (the executor's final commit, a cancel, a run timeout)
calls ``after_end``: the parent of a child run is told how it ended (``notify_parent``), the
child runs it still awaits are cancelled, and its pending timeout schedule is removed
(``engine.runtime.recovery.end_run_timeout``). Cancelling a child is itself a cancel, so
``append_cancel`` and ``after_end`` recurse down a tree of runs; they live together here so that
``engine.runtime.commands`` (which re-exports ``append_cancel``) and ``engine.runtime.children``
both build on this module.
"""

from __future__ import annotations

from typing import Any

from engine.model.records import (
    ChildOutcome,
    OutMessage,
    Resume,
    RunCancelled,
    RunFailed,
    StepFailed,
    StepSuspended,
)
from engine.ports.log import AppendResult, EventLog
from engine.runtime.recovery import end_run_timeout
from engine.runtime.waits import resume_message
from engine.state.fold import RunState
from engine.wire.codec import decode_record, encode
from engine.wire.headers import H_RUN, H_TYPE
from engine.wire.subjects import check_run, run_subject

__all__ = [
    "after_end",
    "append_cancel",
    "awaited_children",
    "cancel_children",
    "fold_run",
    "notify_parent",
    "outcome_of",
]


def outcome_of(state: RunState) -> ChildOutcome:
    """How the (ended) run ``state`` ended, for its parent."""
    base: dict[str, Any] = {"workflow": state.workflow, "run_id": state.run_id, "status": state.status}
    if state.result is not None and state.status == "completed":
        return ChildOutcome(**base, event_type=state.result.event_type, event=state.result.event)
    err = state.error
    if isinstance(err, StepFailed):
        return ChildOutcome(
            **base, error_type=err.error_type, message=err.message, step=err.step, traceback=err.traceback
        )
    if isinstance(err, RunFailed):
        return ChildOutcome(**base, error_type=err.error_type, message=err.message)
    return ChildOutcome(**base)


async def fold_run(log: EventLog, workflow: str, run_id: str) -> RunState:
    """The fold of run ``run_id``'s whole log, record by record."""
    state = RunState(workflow, run_id)
    for raw in await log.read(workflow, run_id):
        state.apply(decode_record(raw))
    return state


async def notify_parent(log: EventLog, state: RunState) -> bool:
    """If ``state`` is an ended child run, resume the parent's waiting step with its outcome
    (once per child: later calls are dropped as duplicates). Returns whether it was a child run
    that has ended."""
    p = state.parent
    if p is None or not state.terminal:
        return False
    resume = Resume(step=p.step, trigger=p.trigger, reason="child", wait=p.wait, child=outcome_of(state))
    await log.append(
        [resume_message(log.prefix, p.workflow, p.run_id, resume)],
        idempotency_key=f"{p.run_id}:child:{state.run_id}",
    )
    return True


def awaited_children(state: RunState) -> list[StepSuspended]:
    """The child waits of ``state`` not resolved yet (their steps have not completed)."""
    return [
        w
        for key, (_, w) in state.waits.items()
        if w.kind == "child" and w.child_run and w.child_workflow and key not in state.resolved
    ]


async def cancel_children(log: EventLog, state: RunState, reason: str = "") -> int:
    """Cancel every child run ``state`` still awaits (and theirs, recursively); returns how many."""
    waits = awaited_children(state)
    for w in waits:
        assert w.child_workflow is not None and w.child_run is not None
        why = reason or f"parent run {state.run_id} cancelled"
        await append_cancel(log, w.child_workflow, w.child_run, why)
    return len(waits)


async def after_end(log: EventLog, workflow: str, run_id: str, reason: str = "") -> None:
    """After a terminal record was appended to a run (a cancel, a timeout): tell its parent,
    cancel the child runs it still awaits (with ``reason``, default "parent run ... cancelled"),
    and remove its pending timeout schedule (``recovery.end_run_timeout``)."""
    state = await fold_run(log, workflow, run_id)
    await notify_parent(log, state)
    if state.terminal:
        await cancel_children(log, state, reason or f"parent run {run_id} {state.status}")
        await end_run_timeout(log, state)


async def append_cancel(log: EventLog, workflow: str, run_id: str, reason: str = "") -> AppendResult:
    """Append ``sys.RunCancelled`` (once per run). Steps not yet started will not run; if the run
    had already ended, the fold keeps the first terminal record and this one changes nothing.
    The run's child runs still awaited are cancelled too, a child run's parent is told, and
    the run's pending timeout schedule is removed (``engine.runtime.recovery.end_run_timeout``).

    Raises:
        ValueError: ``workflow`` or ``run_id`` is not a subject token.
    """
    check_run(workflow, run_id)

    msg = OutMessage(
        run_subject(log.prefix, workflow, run_id, "sys", "RunCancelled"),
        encode(RunCancelled(reason=reason)),
        {H_RUN: run_id, H_TYPE: "RunCancelled"},
    )
    result = await log.append([msg], idempotency_key=f"{run_id}:cancel")
    await after_end(log, workflow, run_id, reason)
    return result
