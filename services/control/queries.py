"""Read models of the control plane, computed from the log on every request (no state of its own).

- a run's view: its records folded (``engine.state.fold``), shaped for JSON;
- the run list: ``sys.RunStarted`` records scanned in sequence order (the cursor is a stream
  sequence), with each page's status read from the last terminal record per run subject (one
  ``multi_last`` direct get per page).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from engine.jetstream.log import JetStreamLog
from engine.model.records import RawRecord, RunFailed, StepFailed, is_one_message_commit
from engine.state.ending import ENDING_STATUS, ENDING_TYPES, FINAL_TYPES, ends_run
from engine.state.fold import RunState
from engine.wire.codec import decode_record
from engine.wire.headers import H_ATTEMPT, H_CLASS, H_COMMIT, H_STEP, H_TARGET, H_TRIGGER, H_WORKER
from engine.wire.subjects import parse_subject

__all__ = [
    "RUN_STATUSES",
    "TERMINAL_TYPES",
    "RunSummary",
    "find_workflow",
    "is_terminal",
    "list_runs",
    "load_run",
    "record_view",
    "rfc3339",
    "run_links",
    "run_view",
    "terminal_seq",
]

TERMINAL_TYPES = FINAL_TYPES  # (a StepFailed ends a run unless handled: see is_terminal)
_STATUS_OF = ENDING_STATUS
RUN_STATUSES = ("running", "completed", "failed", "cancelled")


def rfc3339(ns: int | None) -> str | None:
    """Nanoseconds since the epoch → ``2026-11-21T10:00:00.123456Z`` (``None`` stays ``None``)."""
    if ns is None:
        return None
    dt = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


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


class RunSummary(msgspec.Struct, kw_only=True):
    """One line of ``GET /runs``."""

    run_id: str
    workflow: str
    status: str
    started_at: str | None
    ended_at: str | None = None
    seq: int = 0


def _terminal_subjects(prefix: str, workflow: str, run_id: str) -> list[str]:
    base = f"{prefix}.run.{workflow}.{run_id}.sys."
    # cmd.*: a retry-from-failure after a StepFailed reopens the run (engine.runtime.recovery)
    return [base + t for t in (*TERMINAL_TYPES, "StepFailed")] + [f"{prefix}.run.{workflow}.{run_id}.cmd.*"]


def _ends(hits: list[RawRecord]) -> list[RawRecord]:
    """The terminal records among ``hits`` (last records per terminal and command subject, in
    sequence order): a ``StepFailed`` handled by a ``@catch_error`` step, or followed by a retry of
    its step, ends nothing."""
    out: list[RawRecord] = []
    for i, h in enumerate(hits):
        parts = parse_subject(h.subject)
        if parts is None or parts.kind == "cmd":
            continue
        if parts.type == "StepFailed":
            body = _json(h.data)
            step = body.get("step") if isinstance(body, dict) else None
            if not isinstance(body, dict) or body.get("handled_by"):
                continue
            if any(_reopens(later, parts.run_id, step) for later in hits[i + 1 :]):
                continue
        out.append(h)
    return out


def _reopens(raw: RawRecord, run_id: str, step: str | None) -> bool:
    parts = parse_subject(raw.subject)
    if parts is None or parts.kind != "cmd" or parts.run_id != run_id or parts.type != step:
        return False
    body = _json(raw.data)
    return isinstance(body, dict) and body.get("reason") in ("manual", "retry")


def _status_of(records: list[RawRecord]) -> dict[str, tuple[str, int]]:
    """``{run_id: (status, time_ns)}`` from the last terminal records per subject (the earliest
    of a run's terminal records decides, as in the fold)."""
    out: dict[str, tuple[str, int]] = {}
    for raw in records:  # sorted by seq
        parts = parse_subject(raw.subject)
        if parts is None or parts.run_id in out:
            continue
        out[parts.run_id] = (_STATUS_OF.get(parts.type, "failed"), raw.time_ns)
    return out


async def list_runs(
    log: JetStreamLog,
    *,
    workflow: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: int = 0,
) -> tuple[list[RunSummary], int | None]:
    """Runs in the order they started, after stream sequence ``cursor``.

    Returns:
        up to ``limit`` runs (filtered by ``workflow`` and ``status``), and the cursor of the next
        page (``None`` when there are no more runs).
    """
    subject = f"{log.prefix}.run.{workflow or '*'}.*.sys.RunStarted"
    found: list[RunSummary] = []
    page = max(limit, 100) if status else limit
    while True:
        started = await log.scan(subject, after_seq=cursor, limit=page)
        runs = [(r, p) for r in started if (p := parse_subject(r.subject)) is not None]
        ends = _status_of(
            _ends(
                await log.last_per_subject(
                    [s for _, p in runs for s in _terminal_subjects(log.prefix, p.workflow, p.run_id)]
                )
            )
        )
        for raw, p in runs:
            cursor = raw.seq
            st, ended = ends.get(p.run_id, ("running", None))
            if status is not None and st != status:
                continue
            found.append(
                RunSummary(
                    run_id=p.run_id,
                    workflow=p.workflow,
                    status=st,
                    started_at=rfc3339(raw.time_ns),
                    ended_at=rfc3339(ended),
                    seq=raw.seq,
                )
            )
            if len(found) == limit:
                return found, cursor
        if len(started) < page:
            return found, None


async def find_workflow(log: JetStreamLog, run_id: str) -> str | None:
    """The workflow of run ``run_id``, or ``None`` if no such run was ever started."""
    hits = await log.scan(f"{log.prefix}.run.*.{run_id}.sys.RunStarted", limit=1)
    if not hits:
        return None
    parts = parse_subject(hits[0].subject)
    return parts.workflow if parts is not None else None


async def terminal_seq(log: JetStreamLog, workflow: str, run_id: str) -> int | None:
    """Sequence of the record that ended the run (the earliest terminal one), or ``None``.
    Terminal records that the run's last ``sys.RolledBack`` undid do not count."""
    marker_subject = f"{log.prefix}.run.{workflow}.{run_id}.sys.RolledBack"
    hits = await log.last_per_subject([*_terminal_subjects(log.prefix, workflow, run_id), marker_subject])
    marker = next((h for h in reversed(hits) if h.subject == marker_subject), None)
    ends = _ends([h for h in hits if h.subject != marker_subject])
    if marker is not None:
        to_seq = msgspec.json.decode(marker.data).get("to_seq", 0)
        ends = [h for h in ends if h.seq > marker.seq or h.seq <= to_seq]
    return ends[0].seq if ends else None


async def load_run(
    log: JetStreamLog, workflow: str, run_id: str, *, up_to_seq: int | None = None
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


def run_view(state: RunState) -> dict[str, Any]:
    """A folded run as JSON: ids, ``status`` (running/completed/failed/cancelled), timestamps,
    ``result`` (a plain StopEvent's ``result``, or a StopEvent subclass's fields),
    ``stop_event`` (``{"type", "data"}``), ``error``, counters and the user ``state``."""
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
        "status": "running" if state.status == "pending" else state.status,
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
    }
