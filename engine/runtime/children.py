"""Child workflows: a step runs another workflow and awaits its result (``ctx.run_workflow``).

A child run is an ordinary run whose ``RunStarted`` names the parent step's wait
(``RunStarted.parent``). Awaiting it reuses the durable-wait machinery (``engine.runtime.waits``):

1. ``ctx.run_workflow`` raises ``ChildSuspend``; the executor records ``sys.StepSuspended``
   (``kind="child"``, naming the child run), sets the wait's timer if the call has a timeout, and
   appends the child's start commit (idempotent: the child's run id is derived from the parent run,
   trigger, step and wait, so a parent step run again never starts a second child).
2. Whoever appends the child's terminal record tells the parent: the executor after a commit that
   ends the run (and again on any later trigger of the ended run, which covers a crash in between),
   ``commands.append_cancel`` and the handler's run timeout. The message is a ``Resume(reason="child")`` on the parent's
   ``cmd.<step>``, appended once per child (key ``<parent run>:child:<child run>``).
3. The parent step runs again from its start; ``ctx.run_workflow`` finds the wait resolved in the
   fold and returns the child's result, or raises ``ChildWorkflowError``.

A child given as a class runs in the parent's process (the parent's executor starts one for the
child's workflow on the same log, unless ``in_process=False``); a child given by name runs on
whatever workers serve that workflow, anywhere on the NATS cluster: the parent only needs its name
and its start event's name. A run that ends (cancelled, failed, timed out, or completed by another
step) cancels the child runs it still awaits; a child wait that times out cancels its child.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from engine.model.durations import deadline_ns
from engine.model.errors import ChildWorkflowError
from engine.model.events import StartEvent, StopEvent, encode_event, event_from_fields, event_name
from engine.model.records import ParentRef, Resume, StepSuspended
from engine.ports.log import EventLog
from engine.runtime import commands
from engine.runtime.endings import append_cancel, fold_run, notify_parent
from engine.runtime.spec import WorkflowDefinition
from engine.runtime.waits import StepWaits, Suspend
from engine.state.fold import RunState
from engine.wire.subjects import check_token

__all__ = [
    "ChildSuspend",
    "cancel_timed_out_child",
    "child_run_id",
    "run_child",
    "start_child",
]


class ChildSuspend(Suspend):
    """``Suspend`` for a child wait: also carries the child's start event, which the executor
    appends after recording the wait, and the child's class when it runs in this process."""

    def __init__(
        self,
        record: StepSuspended,
        *,
        start_type: str,
        payload: bytes,
        host: type[WorkflowDefinition] | None,
    ) -> None:
        super().__init__(record)
        self.start_type = start_type
        self.payload = payload
        self.host = host


def child_run_id(run_id: str, trigger: int, step: str, wait: str) -> str:
    """The child run id of a parent's wait: 32 hex digits, a hash of
    ``<run_id>:<trigger>:<step>:<wait>``, so a parent step run again finds the same child."""
    return hashlib.sha256(f"{run_id}:{trigger}:{step}:{wait}".encode()).hexdigest()[:32]


async def start_child(log: EventLog, workflow: str, run_id: str, susp: ChildSuspend) -> None:
    """Start the child run a parent step waits for (``susp``), once. If it already exists and has
    ended (a replay after a crash), tell the parent again; if the parent ended meanwhile, cancel
    the child."""
    rec = susp.record
    assert rec.child_workflow is not None and rec.child_run is not None
    child = await fold_run(log, rec.child_workflow, rec.child_run)
    if child.status == "pending":
        parent = ParentRef(workflow=workflow, run_id=run_id, step=rec.step, trigger=rec.trigger, wait=rec.wait)
        await commands.append_start(
            log, rec.child_workflow, rec.child_run, susp.start_type, susp.payload, parent=parent
        )
    elif child.terminal:
        await notify_parent(log, child)
        return
    # A cancel of the parent that read its log before this wait was recorded missed this child.
    mine = await fold_run(log, workflow, run_id)
    if mine.terminal:
        await append_cancel(
            log, rec.child_workflow, rec.child_run, f"parent run {run_id} {mine.status}"
        )


async def cancel_timed_out_child(log: EventLog, state: RunState, resume: Resume) -> None:
    """If ``resume`` timed out a child wait (and was the wait's first resolution), cancel the
    child."""
    if resume.reason != "timeout" or resume.wait is None:
        return
    key = (resume.trigger, resume.step, resume.wait)
    found = state.waits.get(key)
    first = state.resolved.get(key)
    if found is None or first is None or first.reason != "timeout":
        return
    w = found[1]
    if w.kind == "child" and w.child_workflow and w.child_run:
        await append_cancel(log, w.child_workflow, w.child_run, "timed out")


def _start(
    workflow: type[WorkflowDefinition] | str, start_event: StartEvent | str | None, fields: Mapping[str, Any]
) -> tuple[str, bytes]:
    if isinstance(start_event, StartEvent):
        if fields:
            raise TypeError("pass either a start_event or keyword fields, not both")
        return event_name(type(start_event)), encode_event(start_event)
    if isinstance(workflow, str):
        return start_event or "StartEvent", commands.event_payload(start_event or "StartEvent", dict(fields))
    ev = workflow.start_event_class(**fields)
    return event_name(type(ev)), encode_event(ev)


def _result(resolved: Resume, cls: type[WorkflowDefinition] | None) -> Any:
    out = resolved.child
    assert out is not None and out.event_type is not None
    stop_cls = cls.events.get(out.event_type) if cls is not None else None
    if stop_cls is not None and issubclass(stop_cls, StopEvent) and stop_cls is not StopEvent:
        return event_from_fields(stop_cls, out.event)
    return out.event.get("result")


def _error(waits: StepWaits, resolved: Resume, name: str, run: str) -> ChildWorkflowError:
    out = resolved.child
    if out is None:  # a timeout
        return ChildWorkflowError(
            child_workflow=name,
            child_run_id=run,
            status="timed_out",
            error_message="no result within the call's timeout",
            run_id=waits.run_id,
            step=waits.step,
        )
    return ChildWorkflowError(
        child_workflow=out.workflow,
        child_run_id=out.run_id,
        status=out.status,
        error_type=out.error_type,
        error_message=out.message,
        child_step=out.step,
        traceback=out.traceback,
        run_id=waits.run_id,
        step=waits.step,
    )


async def run_child(
    waits: StepWaits,
    workflow: type[WorkflowDefinition] | str,
    *,
    timeout: float | timedelta | None,
    retries: int,
    run_id: str | None,
    start_event: StartEvent | str | None,
    in_process: bool,
    fields: Mapping[str, Any],
) -> Any:
    """``ctx.run_workflow`` (see there), for the step execution whose waits are ``waits``."""
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    cls = workflow if not isinstance(workflow, str) else None
    name = check_token(workflow if isinstance(workflow, str) else workflow.workflow_name, "workflow")
    if run_id is not None:
        check_token(run_id, "run_id")
        if retries:  # (the last retry's id is the longest: fail here, not in attempt ``retries``)
            check_token(f"{run_id}-r{retries}", f"run_id with its retry suffix (retries={retries})")
    base = waits.next_id(None)
    for attempt in range(retries + 1):
        wait = base if attempt == 0 else f"{base}-r{attempt}"
        if run_id is not None:
            child = check_token(run_id if attempt == 0 else f"{run_id}-r{attempt}", "run_id")
        else:
            child = child_run_id(waits.run_id, waits.trigger, waits.step, wait)
        resolved, suspended = waits.lookup(wait)
        if resolved is None:
            fire_at = deadline_ns(timeout, suspended.fire_at_ns if suspended is not None else None)
            start_type, payload = _start(workflow, start_event, fields)
            raise ChildSuspend(
                StepSuspended(
                    step=waits.step,
                    trigger=waits.trigger,
                    wait=wait,
                    kind="child",
                    fire_at_ns=fire_at,
                    attempt=waits.attempt,
                    child_workflow=name,
                    child_run=child,
                ),
                start_type=start_type,
                payload=payload,
                host=cls if in_process else None,
            )
        if resolved.child is not None and resolved.child.status == "completed":
            return _result(resolved, cls)
        err = _error(waits, resolved, name, child)
        if err.status == "cancelled" or attempt == retries:
            raise err
    raise AssertionError("unreachable")
