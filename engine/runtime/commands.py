"""Commands on runs from outside the workers: start, send an event, cancel.

Each is an append to the run's log and nothing else; the workers react to it. These take event
payloads as JSON bytes, so a process that does not import the workflow's code (the control plane)
can issue them; ``engine.runtime.inprocess`` builds the payloads from event objects.
"""

from __future__ import annotations

from typing import Any

from engine.model.events import TAG_FIELD
from engine.model.records import OutMessage, ParentRef, RunStarted
from engine.ports.log import AppendResult, EventLog
from engine.runtime import tracing
from engine.runtime.endings import append_cancel  # cancel: one of the commands here
from engine.runtime.repair import complete_commit
from engine.runtime.waits import resolve_waits
from engine.state.fold import fold
from engine.wire.codec import decode_record, encode
from engine.wire.commit import copy_of, tag_commit
from engine.wire.headers import H_NEW_RUN, H_RUN, H_TARGET, H_TYPE
from engine.wire.subjects import check_run, check_token, run_subject

__all__ = [
    "append_cancel",
    "append_event",
    "append_start",
    "event_key",
    "event_payload",
    "run_started",
    "start_event_message",
    "start_key",
    "start_messages",
]


def event_payload(event_type: str, fields: dict[str, object]) -> bytes:
    """The JSON payload of an event given by name and fields (the ``$type`` tag first)."""
    return encode({TAG_FIELD: event_type, **{k: v for k, v in fields.items() if k != TAG_FIELD}})


def start_key(run_id: str) -> str:
    """The idempotency key of a run's start commit."""
    return f"{run_id}:start"


def event_key(run_id: str, idempotency_key: str) -> str:
    """The idempotency key of an event sent to a run from outside with ``idempotency_key``
    (``append_event``); the log stores it as the message's ``Nats-Msg-Id``."""
    return f"{run_id}:ext:{idempotency_key}"


def start_messages(
    prefix: str,
    workflow: str,
    run_id: str,
    event_type: str,
    payload: bytes,
    *,
    copy: bool = True,
    parent: ParentRef | None = None,
    initial_state: dict[str, Any] | None = None,
    new_run: bool = False,
    timeout_at_ns: int = 0,
) -> list[OutMessage]:
    """The two records that start a run: ``sys.RunStarted`` then the start event. With ``copy``
    (for logs whose appends are not atomic), RunStarted carries a copy of the start event so an
    interrupted start can be completed (``engine.wire.commit``). ``parent``: the wait a child run
    answers (``engine.runtime.children``). ``initial_state`` is the user state the run starts with
    (default: empty). ``new_run``: the run id was made for this start and the commit is sent
    without idempotency ids; the start event says so (``Jl-New-Run``), and the first step's
    worker then needs no read (``engine.runtime.runs``). ``timeout_at_ns``: when the run's timeout
    schedule fires (``engine.runtime.recovery.schedule_run_timeout``), 0 for none."""
    if new_run and (parent is not None or initial_state or timeout_at_ns):
        raise ValueError("a new run's start event carries no parent, initial state or run timeout")
    event = start_event_message(prefix, workflow, run_id, event_type, payload, new_run=new_run)
    body = run_started(
        workflow, run_id, event, copy=copy, parent=parent, initial_state=initial_state, timeout_at_ns=timeout_at_ns
    )
    started = OutMessage(
        run_subject(prefix, workflow, run_id, "sys", "RunStarted"),
        encode(body),
        {H_RUN: run_id, H_TYPE: "RunStarted"},
    )
    if tracing.traced():  # (the start span: both records carry its context)
        tracing.inject(started.headers)
        tracing.inject(event.headers)
    return tag_commit([started, event], start_key(run_id), pipelined=copy)


def start_event_message(
    prefix: str, workflow: str, run_id: str, event_type: str, payload: bytes, *, new_run: bool = False
) -> OutMessage:
    """The start event of a start commit, before its commit tag (``start_messages``)."""
    headers = {H_RUN: run_id, H_TYPE: event_type}
    if new_run:
        headers[H_NEW_RUN] = "1"
    return OutMessage(run_subject(prefix, workflow, run_id, "evt", event_type), payload, headers)


def run_started(
    workflow: str,
    run_id: str,
    event: OutMessage,
    *,
    copy: bool = True,
    parent: ParentRef | None = None,
    initial_state: dict[str, Any] | None = None,
    timeout_at_ns: int = 0,
) -> RunStarted:
    """The ``RunStarted`` body of a start commit whose start event is ``event`` (as
    ``start_event_message`` makes it); arguments as for ``start_messages``."""
    return RunStarted(
        workflow=workflow,
        run_id=run_id,
        start_event=event.headers[H_TYPE],
        messages=copy_of([event], {H_RUN: run_id}) if copy else [],
        parent=parent,
        initial_state=initial_state or {},
        timeout_at_ns=timeout_at_ns,
    )


async def append_start(
    log: EventLog,
    workflow: str,
    run_id: str,
    event_type: str,
    payload: bytes,
    *,
    parent: ParentRef | None = None,
    initial_state: dict[str, Any] | None = None,
    timeout_at_ns: int = 0,
    new_run: bool = False,
) -> AppendResult:
    """Append a run's start commit. Idempotent per run id: starting the same id twice starts one
    run (``duplicate=True`` the second time, within the log's duplicate window), and completes the
    first start's commit if a crash interrupted it. ``initial_state``: the user state the run
    starts with (default: empty; sessions pass the previous run's final state).
    ``timeout_at_ns``: when the run timeout scheduled after this start fires (ns since the epoch;
    ``engine.runtime.recovery.schedule_run_timeout``), 0 for none. ``new_run``: the run id was
    just made for this start, so nobody else can start it: the commit is sent without
    idempotency ids, both messages at once (one round trip instead of two), and marked so that
    the first step's worker needs no read (``start_messages``).

    Raises:
        ValueError: ``workflow``, ``run_id`` or ``event_type`` is not a subject token
            (``engine.wire.subjects.check_token``); ``new_run`` with a parent, an initial state
            or a run timeout.
    """
    check_run(workflow, run_id)
    check_token(event_type, "event type")
    key = start_key(run_id)
    with tracing.start_span(workflow, run_id):
        messages = start_messages(
            log.prefix,
            workflow,
            run_id,
            event_type,
            payload,
            copy=not log.atomic,
            parent=parent,
            initial_state=initial_state,
            timeout_at_ns=timeout_at_ns,
            new_run=new_run,
        )
        result = await log.append(messages, idempotency_key=None if new_run else key)
    if result.duplicate and not log.atomic and not new_run:
        state = fold(decode_record(r) for r in await log.read(workflow, run_id))
        await complete_commit(log, state, key)
    return result


async def append_event(
    log: EventLog,
    workflow: str,
    run_id: str,
    event_type: str,
    payload: bytes,
    *,
    target: str | None = None,
    idempotency_key: str | None = None,
) -> AppendResult:
    """Append an event to a run from outside (human input, another system), optionally addressed
    to one step (``target``), then resume the step that waits for it, if any
    (``ctx.wait_for_event``). With an ``idempotency_key``, a repeat is dropped as a duplicate.

    Raises:
        ValueError: ``workflow``, ``run_id``, ``event_type`` or ``target`` is not a subject token.
    """
    check_run(workflow, run_id)
    check_token(event_type, "event type")
    if target is not None:
        check_token(target, "target step")
    headers = {H_RUN: run_id, H_TYPE: event_type}
    if target is not None:
        headers[H_TARGET] = target
    msg = OutMessage(run_subject(log.prefix, workflow, run_id, "evt", event_type), payload, headers)
    key = event_key(run_id, idempotency_key) if idempotency_key is not None else None
    tr = tracing.tracer()
    if tr is None:
        return await _append_event(log, workflow, run_id, msg, key)
    # (traced: the event joins the run's trace, under a span of its own; the run's first record,
    # its RunStarted, says the trace)
    raws = await log.read(workflow, run_id)
    with tracing.send_span(tr, workflow, run_id, event_type, raws[0].headers if raws else {}):
        tracing.inject(headers)
        return await _append_event(log, workflow, run_id, msg, key)


async def _append_event(log: EventLog, workflow: str, run_id: str, msg: OutMessage, key: str | None) -> AppendResult:
    result = await log.append([msg], idempotency_key=key)
    # an awaited event resumes its waiting step (also when this is a retried duplicate whose
    # first attempt stopped before this point)
    await resolve_waits(log, workflow, run_id)
    return result
