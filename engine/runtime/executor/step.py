"""Step execution: one call of a step on one trigger, with the ``Context`` it gets, turned into the
messages of its commit (or a ``Suspend`` when it waits, or a ``Failed`` when it raised).

The common step (one event out, or the run's end, and nothing else) commits one message, which
is its own head (``engine.wire.commit``); any other commit starts with its ``StepCompleted``.

A step's resource parameters (``engine.runtime.resources``) are resolved here, through the
workflow instance's resource manager, just before it is called. An ``InputRequiredEvent`` a step
returns goes to the run's output stream (and to the steps accepting it, if any), as in
llama-index-workflows; one it sends that no step accepts goes to the stream only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine.model.errors import (
    WorkflowConfigurationError,
    WorkflowStepDoesNotExistError,
    WorkflowValidationError,
)
from engine.model.events import (
    Event,
    InputRequiredEvent,
    StopEvent,
    class_path,
    encode_checked,
    event_fields,
    event_name,
)
from engine.model.records import OutMessage, RunCompleted, StepCompleted
from engine.model.retry import StepTimeoutError
from engine.ports.log import EventLog
from engine.runtime import tracing
from engine.runtime.children import ChildSuspend
from engine.runtime.context import Context
from engine.runtime.executor.stats import ExecutorStats
from engine.runtime.failures import Failed, attempt_key
from engine.runtime.resources import manager_for
from engine.runtime.runs import CachedRun
from engine.runtime.spec import StepSpec, WorkflowDefinition, validate_class
from engine.runtime.waits import Suspend
from engine.wire.codec import sys_message
from engine.wire.commit import copy_of, one_message_commit, tag_commit
from engine.wire.headers import (
    H_CLASS,
    H_FAN_OUT,
    H_LENGTH,
    H_RUN,
    H_STEP,
    H_TARGET,
    H_TRIGGER,
    H_TYPE,
)
from engine.wire.subjects import run_subject

__all__ = ["StepRunner"]


class StepRunner:
    """Calls the steps of one workflow instance and builds their commits.

    Args:
        workflow: the workflow instance whose step methods are called.
        log: the event log the commits are for (its ``prefix`` and ``atomic``).
        worker_id: recorded on every completion.
        stats: the executor's counters (``handled``, ``failed``).
        traced: tracing is on (``engine.runtime.tracing``): the commits carry the trace context
            of the step's span, and the span says how the step ended (default off).
    """

    def __init__(
        self, workflow: WorkflowDefinition, log: EventLog, *, worker_id: str, stats: ExecutorStats, traced: bool = False
    ) -> None:
        self.traced = traced
        self.workflow = workflow
        self.log = log
        self.name = type(workflow).workflow_name
        self.events = type(workflow).events
        self.worker_id = worker_id
        self.stats = stats
        steps = type(workflow).steps
        self.step_names = frozenset(steps)
        self.accepted = frozenset(n for s in steps.values() for n in s.accepts_names)
        self.resources = manager_for(workflow)

    async def run(
        self, spec: StepSpec, run: CachedRun, run_id: str, seq: int, event: Event, attempt: int, epoch: int = 0
    ) -> list[OutMessage] | Suspend | Failed:
        """Run ``spec`` on trigger ``seq`` (``event``) of ``run``, attempt ``attempt`` after the
        run's ``epoch``-th rollback, with a ``Context`` showing the run as of the trigger.

        Returns:
            the messages of its commit, the ``Suspend`` it raised to wait, or the ``Failed``
            attempt (it raised, or its commit's events do not encode).
        """
        ctx = Context(
            run_id=run_id,
            step=spec.name,
            trigger_seq=seq,
            state=run.state_at(seq),
            collector=lambda expected: run.collect(spec.name, expected, seq),
            known_events=self.events,
            run=run.state,
            attempt=attempt,
            state_type=spec.state_type,
        )
        kwargs: dict[str, Any] = {spec.event_param: event}
        if spec.ctx_param is not None:
            kwargs[spec.ctx_param] = ctx
        t0 = time.perf_counter()
        try:
            if spec.resources:
                kwargs.update(await self.resources.resolve_step(spec.resources))
            returned = await self.call(spec, kwargs)
            if returned is not None and not isinstance(returned, Event):
                raise TypeError(
                    f"step {spec.name!r} returned {type(returned).__name__}; "
                    "a step returns an Event or None"
                )
            messages = self.success(spec, ctx, run_id, seq, attempt, returned, t0, epoch, run.state.records)
        except asyncio.CancelledError:
            raise
        except Suspend as susp:
            if self.traced:
                tracing.note_outcome("suspended")
            if isinstance(susp, ChildSuspend) and susp.host is not None:
                try:
                    validate_class(susp.host)  # (as the child's run() would, in llama-index-workflows)
                except (WorkflowValidationError, WorkflowConfigurationError) as exc:
                    self.stats.failed += 1
                    self.stats.handled += 1
                    return Failed(exc, t0)
            return susp
        except Exception as exc:
            if self.traced:
                tracing.note_failure(exc)
            self.stats.failed += 1
            self.stats.handled += 1
            return Failed(exc, t0)
        self.stats.handled += 1
        return messages

    async def call(self, spec: StepSpec, kwargs: dict[str, Any]) -> Any:
        """Call the step's function (with the workflow instance first, unless it is a free
        function), within its ``timeout`` (``StepTimeoutError`` past it)."""
        args = (self.workflow,) if spec.bound else ()
        if spec.timeout is None:  # (no timeout context when there is no timeout: it costs CPU on every step)
            if spec.is_async:
                return await spec.fn(*args, **kwargs)
            return await asyncio.to_thread(spec.fn, *args, **kwargs)
        cm = asyncio.timeout(spec.timeout)
        try:
            async with cm:
                if spec.is_async:
                    return await spec.fn(*args, **kwargs)
                return await asyncio.to_thread(spec.fn, *args, **kwargs)
        except TimeoutError as exc:
            if cm.expired():
                raise StepTimeoutError(
                    f"step {spec.name!r} ran longer than its timeout of {spec.timeout}s"
                ) from exc
            raise

    def success(
        self,
        spec: StepSpec,
        ctx: Context,
        run_id: str,
        seq: int,
        attempt: int,
        returned: Event | None,
        t0: float,
        epoch: int = 0,
        length: int = 0,
    ) -> list[OutMessage]:
        """The commit of an attempt that returned ``returned``: the events it emitted and
        streamed, a ``RunCompleted`` for a ``StopEvent``, under ``StepCompleted`` (with the state it
        set, the events it consumed, and a copy of the rest on a pipelined log), or alone as a
        one-message commit when that is all there is. ``length``: the run's records as folded,
        put on each emitted event (``Jl-Length``).

        Raises:
            ValueError: it returned an event no step accepts.
            WorkflowStepDoesNotExistError: it sent an event to a step the workflow lacks.
            EventValidationError / TypeError: an event or record does not encode.
        """
        prefix = self.log.prefix
        base = {H_RUN: run_id, H_STEP: spec.name, H_TRIGGER: str(seq)}
        if self.traced:  # (every record of the commit carries the step span's context)
            tracing.inject(base)
        length_now = str(length)
        emitted = list(ctx.emitted)
        streamed = list(ctx.streamed)
        if returned is not None:
            leaves = isinstance(returned, StopEvent | InputRequiredEvent)
            if not leaves and event_name(type(returned)) not in self.events:
                raise ValueError(f"no step of this workflow accepts {event_name(type(returned))}")
            emitted.append((returned, None))
        out: list[OutMessage] = []
        stop: StopEvent | None = None
        names: list[str] = []
        for ev, target in emitted:
            if isinstance(ev, StopEvent):
                stop = stop or ev
                continue
            if target is not None and target not in self.step_names:
                raise WorkflowStepDoesNotExistError(
                    f"step {spec.name!r} sent {event_name(type(ev))} to step {target!r}, which "
                    f"workflow {self.name!r} does not have",
                    run_id=run_id,
                    step=spec.name,
                )
            name = event_name(type(ev))
            if isinstance(ev, InputRequiredEvent) and name not in self.accepted:
                if ev is not returned:
                    streamed.append(ev)  # (a request no step takes is for the outside only)
                continue
            names.append(name)
            headers = {**base, H_TYPE: name, H_LENGTH: length_now}
            if target is not None:
                headers[H_TARGET] = target
            # (checked against its type: a wrong-typed field fails this step, not its consumer)
            out.append(OutMessage(run_subject(prefix, self.name, run_id, "evt", name), encode_checked(ev), headers))
        if len(out) > 1:  # a fan-out: its parts are left where they land (run affinity)
            for msg in out:
                msg.headers[H_FAN_OUT] = "1"
        if isinstance(returned, InputRequiredEvent):
            streamed.append(returned)  # (as llama-index-workflows: a returned request is published)
        for ev in streamed:
            name = event_name(type(ev))
            headers = {**base, H_TYPE: name, H_CLASS: class_path(type(ev))}
            out.append(OutMessage(run_subject(prefix, self.name, run_id, "out", name), encode_checked(ev), headers))
        if stop is not None:
            completed = RunCompleted(
                step=spec.name, trigger=seq, event_type=event_name(type(stop)), event=event_fields(stop)
            )
            out.append(sys_message(self.log.prefix, self.name, run_id, "RunCompleted", completed, base))
        key = attempt_key(run_id, seq, spec.name, attempt, epoch)
        if len(out) == 1 and not streamed and attempt == 1 and not ctx.store.changes and not ctx.consumed:
            # The common step (one event out, or the run's end, and nothing else): a one-message
            # commit, that record as its own head (engine.wire.commit); the fold reads the completion
            # from it.
            return [one_message_commit(out[0], key, self.worker_id)]
        done = StepCompleted(
            step=spec.name,
            trigger=seq,
            attempt=attempt,
            emitted=names,
            state=ctx.store.changes,
            consumed=ctx.consumed,
            duration_ms=(time.perf_counter() - t0) * 1e3,
            worker=self.worker_id,
            messages=copy_of(out, base) if out and not self.log.atomic else [],
        )
        # The completion record goes first: the state it sets and the events it consumed are then
        # in the prefix every emitted event's handler sees.
        out.insert(0, sys_message(self.log.prefix, self.name, run_id, "StepCompleted", done, base))
        return tag_commit(out, key, pipelined=not self.log.atomic)
