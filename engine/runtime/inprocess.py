"""Starting runs: the start commit, and the in-process runtime behind ``Workflow.run()``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from engine.model.errors import ContextSerdeError, ContextStateError
from engine.model.events import StartEvent, encode_checked, encode_event, event_name
from engine.model.records import OutMessage
from engine.ports.log import EventLog
from engine.runtime import commands
from engine.runtime.commands import start_key, start_messages
from engine.runtime.context import Context
from engine.runtime.endings import fold_run
from engine.runtime.executor import Executor
from engine.runtime.handler import Choice, WorkflowHandler
from engine.runtime.spec import WorkflowDefinition
from engine.wire.subjects import check_token, parse_subject

__all__ = [
    "InProcessRuntime",
    "append_start",
    "build_start_event",
    "new_run_id",
    "start_commit",
    "start_key",
    "start_run",
]


def new_run_id() -> str:
    """A new random run id: 32 hex digits (128 random bits, as a UUID4 has 122)."""
    return os.urandom(16).hex()


def start_commit(
    prefix: str, workflow: str, run_id: str, start: StartEvent, *, copy: bool = True, new_run: bool = False
) -> list[OutMessage]:
    """The two records that start a run: ``sys.RunStarted`` then the start event (with ``copy``,
    RunStarted carries a copy of the start event; ``new_run``: the run id was made for this start;
    see ``commands.start_messages``)."""
    return start_messages(
        prefix, workflow, run_id, event_name(type(start)), encode_event(start), copy=copy, new_run=new_run
    )


async def append_start(
    log: EventLog,
    workflow: str,
    run_id: str,
    start: StartEvent,
    *,
    fresh: bool = False,
    initial_state: dict[str, Any] | None = None,
) -> None:
    """Append a run's start commit (idempotent per run id; see ``commands.append_start``).

    With ``fresh`` (the run id was just generated here, so nobody else can start it), the commit
    is sent without idempotency ids, both messages at once: one round trip instead of two.
    """
    await _append_start_payload(
        log, workflow, run_id, event_name(type(start)), encode_event(start), fresh=fresh, initial_state=initial_state
    )


async def _append_start_payload(
    log: EventLog,
    workflow: str,
    run_id: str,
    event_type: str,
    payload: bytes,
    *,
    fresh: bool,
    initial_state: dict[str, Any] | None,
) -> None:
    """``append_start`` for a start event already encoded."""
    await commands.append_start(
        log, workflow, run_id, event_type, payload, initial_state=initial_state, new_run=fresh and not initial_state
    )


def build_start_event(cls: type[WorkflowDefinition], start_event: StartEvent | None, fields: dict[str, Any]) -> StartEvent:
    """``start_event``, or one of ``cls``'s start event class built from ``fields``.

    Raises:
        TypeError: both ``start_event`` and ``fields`` were given.
    """
    if start_event is not None:
        if fields:
            raise TypeError("pass either start_event or keyword fields, not both")
        return start_event
    return cls.start_event_class(**fields)


class InProcessRuntime:
    """The executor a workflow instance runs its own runs on (``Workflow.run()``); started with
    the first active run and stopped when the last one ends.

    Args:
        workflow: the workflow instance whose steps run here.
        log: the event log its runs go to.
    """

    def __init__(self, workflow: WorkflowDefinition, log: EventLog) -> None:
        self.log = log
        self.executor = Executor(workflow, log)
        self.active = 0
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            self.active += 1
            if self.active == 1:
                await self.executor.start()

    async def release(self) -> None:
        async with self.lock:
            self.active -= 1
            if self.active == 0:
                await self.executor.stop(grace=0)

    def start(
        self,
        *,
        start_event: StartEvent | None,
        run_id: str | None,
        fields: dict[str, Any],
        timeout: float | None,
        ctx: Context[Any] | None = None,
    ) -> WorkflowHandler:
        """Start a run on this runtime's executor and return its handler (``start_run``; the
        executor runs while any of its runs does).

        Raises:
            TypeError / ValueError / EventValidationError: as ``start_run``.
        """
        return start_run(
            self.log,
            type(self.executor.workflow),
            start_event=start_event,
            run_id=run_id,
            fields=fields,
            timeout=timeout,
            before=self.acquire,
            after=self.release,
            ctx=ctx,
            definition=self.executor.workflow,
        )


def start_run(
    log: EventLog,
    cls: type[WorkflowDefinition],
    *,
    start_event: StartEvent | None,
    run_id: str | None,
    fields: dict[str, Any],
    timeout: float | None,
    before: Callable[[], Awaitable[None]] | None = None,
    after: Callable[[], Awaitable[None]] | None = None,
    ctx: Context[Any] | None = None,
    definition: WorkflowDefinition | None = None,
) -> WorkflowHandler:
    """A handler for a new run of ``cls``: it appends the start commit (after ``before``), follows
    the run's log, and calls ``after`` once the run has ended.

    With ``ctx`` (``Workflow.run(ctx=...)``, as llama-index-workflows'), the context is bound to
    the handler (``handler.ctx is ctx``) and, when the follow begins: a context of no run starts a
    new run with the state it staged (its store) as initial state; a context of a run that is
    still going re-attaches to that run (the start event is not used); a context of a run that
    has ended starts a new run whose initial state is that run's final state (read from the log,
    or the context's copy of it when the log does not have the run). When the context was taken
    while its run was going (``ctx.is_running``, e.g. a ``to_dict`` made before ``cancel_run``)
    and neither ``start_event`` nor ``fields`` is given, that new run starts with the ended run's
    start event: llama-index-workflows resumes such a context where it stopped, with no new start
    event; jetloom's ended runs stay ended, so the run that follows replays the same start.

    Raises:
        TypeError: both ``start_event`` and ``fields`` were given.
        ValueError: ``run_id`` is not a subject token (1 to ``engine.wire.subjects.NAME_MAX`` characters of
            ``A-Z a-z 0-9 _ -``).
        EventValidationError: a field of the start event does not match its annotation.
        ContextStateError: ``ctx`` is a step's context.
        ContextSerdeError: ``ctx`` is of another workflow.
    """
    if ctx is not None:
        return _start_with_context(
            log, cls, ctx, start_event=start_event, run_id=run_id, fields=fields, timeout=timeout,
            before=before, after=after, definition=definition,
        )
    start = build_start_event(cls, start_event, fields)
    encode_checked(start)  # (here, not in the first step's consumer: the run would be dead-lettered)
    rid = check_token(run_id, "run id") if run_id else new_run_id()

    async def prepare() -> None:
        if before is not None:
            await before()
        await append_start(log, cls.workflow_name, rid, start, fresh=run_id is None)

    return WorkflowHandler(
        log=log,
        workflow=cls.workflow_name,
        run_id=rid,
        events=cls.events,
        timeout=timeout,
        prepare=prepare,
        cleanup=after,
        fresh=run_id is None,
        definition=definition if definition is not None else cls,
    )


def _start_with_context(
    log: EventLog,
    cls: type[WorkflowDefinition],
    ctx: Context[Any],
    *,
    start_event: StartEvent | None,
    run_id: str | None,
    fields: dict[str, Any],
    timeout: float | None,
    before: Callable[[], Awaitable[None]] | None,
    after: Callable[[], Awaitable[None]] | None,
    definition: WorkflowDefinition | None,
) -> WorkflowHandler:
    """``start_run`` with a context (see there)."""
    if not isinstance(ctx, Context):
        raise TypeError(f"ctx must be a Context, got {type(ctx).__name__}")
    if ctx.step_context:
        raise ContextStateError("Cannot start workflow from a step function context")
    if ctx.workflow_name != cls.workflow_name:
        raise ContextSerdeError(f"the context is of workflow {ctx.workflow_name!r}, not {cls.workflow_name!r}")
    # (a context taken from a running run, given no start: the run that follows an ended one
    # starts as it did; a start built from no fields is only the fallback, so its error waits)
    again = start_event is None and not fields and ctx.is_running
    start: StartEvent | None = None
    start_error: Exception | None = None
    try:
        start = build_start_event(cls, start_event, fields)
        encode_checked(start)
    except Exception as exc:
        if not again:
            raise
        start_error = exc
    previous = ctx.run_id
    seed = ctx.state_copy()
    new_id = check_token(run_id, "run id") if run_id else new_run_id()
    if previous is not None and run_id is not None and run_id != previous:
        previous = None  # (an explicit new run id starts a new run, with the context's state)

    acquired = False  # ``before`` ran (``cleanup=after`` balances it when the handler ends)

    async def acquire() -> None:
        nonlocal acquired
        if before is not None and not acquired:
            acquired = True
            await before()

    def starter(rid: str, state: dict[str, Any], first: StartEvent | tuple[str, bytes]) -> Callable[[], Awaitable[None]]:
        async def prepare() -> None:
            await acquire()
            if isinstance(first, StartEvent):
                await append_start(log, cls.workflow_name, rid, first, fresh=True, initial_state=state)
            else:
                await _append_start_payload(log, cls.workflow_name, rid, *first, fresh=True, initial_state=state)

        return prepare

    async def choose() -> Choice:
        state = seed
        first: StartEvent | tuple[str, bytes] | None = start
        if previous is not None:
            await acquire()  # (the executor runs for a re-attached run too)
            folded = await fold_run(log, cls.workflow_name, previous)
            if folded.status != "pending" and not folded.terminal:
                return previous, None, False
            if folded.status != "pending":
                state = folded.state
                if again and folded.start_event is not None:
                    first = await _start_of(log, cls.workflow_name, previous, folded.start_event) or first
        if first is None:  # (no start built, and none to replay: the build's error)
            raise start_error if start_error is not None else RuntimeError("no start event")
        return new_id, starter(new_id, state, first), True

    async def release() -> None:
        if acquired and after is not None:
            await after()

    return WorkflowHandler(
        log=log,
        workflow=cls.workflow_name,
        run_id=previous or new_id,
        events=cls.events,
        timeout=timeout,
        cleanup=release,
        definition=definition if definition is not None else cls,
        choose=choose,
        ctx=ctx,
    )


async def _start_of(log: EventLog, workflow: str, run_id: str, event_type: str) -> tuple[str, bytes] | None:
    """The type and payload of run ``run_id``'s start event (``event_type``, as its
    ``RunStarted`` names it), as the log holds it; ``None`` if the log has no such record."""
    for raw in await log.read(workflow, run_id):
        parts = parse_subject(raw.subject)
        if parts is not None and parts.kind == "evt" and parts.type == event_type:
            return event_type, raw.data
    return None
