"""Read models of the control plane, computed from the log on every request (no state of its own):
a run's view (its records folded, ``engine.state.fold``) and a record's, shaped for JSON. Run
listings and look-ups across runs are the run index's (``engine.ports.runindex``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import msgspec
import orjson

from engine.model.records import RawRecord, RunFailed, StepFailed, is_one_message_commit
from engine.ports.log import EventLog
from engine.ports.runindex import rfc3339
from engine.state.ending import ENDING_TYPES, ends_run
from engine.state.fold import RunState
from engine.state.orphans import OrphanFilter
from engine.wire.codec import decode_record
from engine.wire.headers import H_ATTEMPT, H_CLASS, H_COMMIT, H_STEP, H_TARGET, H_TRIGGER, H_WORKER
from engine.wire.subjects import parse_subject

__all__ = [
    "follow_run",
    "is_terminal",
    "load_run",
    "record_view",
    "run_links",
    "run_view",
    "waits_view",
]

async def follow_run(
    log: EventLog, workflow: str, run_id: str, after: int, ping: float
) -> AsyncGenerator[RawRecord | None, None]:
    """The run's records after sequence ``after`` as they are committed, orphans left out
    (``engine.state.orphans``), ending after the record that ends the run; ``None`` whenever
    ``ping`` seconds pass without a record (a server-sent stream's keep-alive)."""
    queue: asyncio.Queue[RawRecord | None] = asyncio.Queue(maxsize=1024)

    async def pump() -> None:
        try:
            orphans = OrphanFilter()  # (it needs the commit heads before ``after`` too)
            for raw in await log.read(workflow, run_id, up_to_seq=after) if after else ():
                orphans.counts(raw)
            records = log.follow(workflow, run_id, after_seq=after)
            async with contextlib.aclosing(records):  # type: ignore[type-var]  # the log's follow iterator has aclose, not declared by the port
                async for raw in records:
                    if not orphans.counts(raw):
                        continue
                    await queue.put(raw)
                    if is_terminal(raw):
                        break
        finally:
            await queue.put(None)

    task = asyncio.create_task(pump(), name=f"jetloom:follow:{run_id}")
    try:
        while True:
            try:
                raw = await asyncio.wait_for(queue.get(), ping)
            except TimeoutError:
                yield None
                continue
            if raw is None:
                return
            yield raw
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def is_terminal(raw: RawRecord) -> bool:
    """Whether a record ends a run (the first one that does wins; ``engine.state.ending.ends_run``)."""
    parts = parse_subject(raw.subject)
    if parts is None or parts.kind != "sys" or parts.type not in ENDING_TYPES:
        return False
    try:  # a failure an error handler (@catch_error) took over does not end the run
        handled = orjson.loads(raw.data).get("handled_by") if parts.type == "StepFailed" else None
    except (orjson.JSONDecodeError, AttributeError):
        handled = None
    return ends_run(parts.type, handled)


async def load_run(
    log: EventLog, workflow: str, run_id: str, *, up_to_seq: int | None = None
) -> tuple[RunState, list[RawRecord]]:
    """The run's records (up to ``up_to_seq``) and their fold."""
    records = await log.read(workflow, run_id, up_to_seq=up_to_seq)
    state = RunState(workflow, run_id)
    for raw in records:
        state.apply(decode_record(raw))
    return state, records


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"$raw": data.decode("utf-8", "replace")}


def record_view(raw: RawRecord) -> dict[str, Any]:
    """A record as JSON: ``seq``, ``time``, ``kind`` (evt/sys/out), ``type``, ``subject``,
    ``step``/``trigger``/``target``/``attempt``/``class`` (``module:QualName`` of stream output)/``worker`` when set,
    ``completes_step: true`` on an event or ``RunCompleted`` that is its step's whole commit (it
    stands for the ``sys.StepCompleted`` of that step), ``data`` (the payload, parsed)."""
    parts = parse_subject(raw.subject)
    h = raw.headers
    view: dict[str, Any] = {
        "seq": raw.seq,
        "time": rfc3339(raw.time_ns),
        "kind": parts.kind if parts else "?",
        "type": parts.type if parts else "?",
        "subject": raw.subject,
    }
    for key, header in (("step", H_STEP), ("target", H_TARGET), ("class", H_CLASS), ("worker", H_WORKER)):
        if header in h:
            view[key] = h[header]
    for key, header in (("trigger", H_TRIGGER), ("attempt", H_ATTEMPT)):
        if header in h and h[header].isdigit():
            view[key] = int(h[header])
    if is_one_message_commit(view["kind"], view["type"], h.get(H_COMMIT), h.get(H_STEP)):
        view["completes_step"] = True  # the record is its step's whole commit (engine.wire.commit)
    view["data"] = _json(raw.data)
    return view


def _error_view(state: RunState) -> dict[str, Any] | None:
    err = state.error
    if isinstance(err, StepFailed):
        return {
            "type": "StepFailedError",
            "step": err.step,
            "error_type": err.error_type,
            "message": err.message,
            "traceback": err.traceback,
            "trigger": err.trigger,
        }
    if isinstance(err, RunFailed):
        view = {"type": err.error_type, "message": err.message}
        if err.dead_letter is not None:  # the trigger no step could take: where, which step, why
            view["dead_letter"] = msgspec.to_builtins(err.dead_letter)
        return view
    if state.status == "cancelled":
        return {"type": "WorkflowCancelledError", "message": f"run {state.run_id} was cancelled"}
    return None


def run_links(run_id: str) -> dict[str, str]:
    """The API paths of a run (``self``, ``events``, ``stream``), as start, fork and session
    runs answer them."""
    return {"self": f"/runs/{run_id}", "events": f"/runs/{run_id}/events", "stream": f"/runs/{run_id}/stream"}


def waits_view(state: RunState, records: Sequence[RawRecord] = ()) -> list[dict[str, Any]]:
    """The run's open ``wait_for_event`` waits (``RunState.open_event_waits``; none once the run
    ended), oldest first: ``step``, ``event`` (the awaited event's type name), ``wait_id``,
    ``trigger``, ``seq`` (of the ``StepSuspended``), ``since`` (its time, RFC 3339; ``None`` when
    ``records``, the run's records in sequence order, do not hold it), ``timeout_at`` (RFC 3339,
    ``None`` without a timeout), ``requirements`` and ``event_schema`` (of the awaited event's
    fields)."""
    if state.terminal:
        return []
    seqs = [r.seq for r in records]
    out = []
    for seq, w in state.open_event_waits():
        i = bisect.bisect_left(seqs, seq)
        since = rfc3339(records[i].time_ns) if i < len(seqs) and seqs[i] == seq else None
        out.append(
            {
                "step": w.step,
                "event": w.event_type,
                "wait_id": w.wait,
                "trigger": w.trigger,
                "seq": seq,
                "since": since,
                "timeout_at": rfc3339(w.fire_at_ns or None),
                "requirements": w.requirements,
                "event_schema": w.event_schema,
            }
        )
    return out


def run_view(state: RunState, records: Sequence[RawRecord] = ()) -> dict[str, Any]:
    """A folded run as JSON: ids, ``status`` (running/waiting/completed/failed/cancelled; waiting:
    not ended, with an open ``wait_for_event`` wait), timestamps, ``result`` (a plain StopEvent's
    ``result``, or a StopEvent subclass's fields), ``stop_event`` (``{"type", "data"}``),
    ``error``, counters, the user ``state`` and ``waiting_for`` (``waits_view``; ``records``, the
    run's records, give each wait its ``since``)."""
    waiting_for = waits_view(state, records)
    status = "running" if state.status == "pending" else state.status
    if waiting_for and status == "running":
        status = "waiting"
    ended = state.ended_ns
    duration = (ended - state.started_ns) / 1e6 if ended and state.started_ns else None
    result: Any = None
    stop_event: dict[str, Any] | None = None
    if state.result is not None:
        fields = state.result.event
        stop_event = {"type": state.result.event_type, "data": fields}
        result = fields.get("result") if state.result.event_type == "StopEvent" else fields
    return {
        "run_id": state.run_id,
        "workflow": state.workflow,
        "status": status,
        "started_at": rfc3339(state.started_ns),
        "ended_at": rfc3339(ended),
        "duration_ms": duration,
        "result": result,
        "stop_event": stop_event,
        "error": _error_view(state),
        "steps_completed": state.steps_completed,
        "steps_failed": state.steps_failed,
        "records": state.records,
        "last_seq": state.seq,
        "state": state.state,
        "waiting_for": waiting_for,
    }
