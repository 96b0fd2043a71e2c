"""The bodies of jetloom's HTTP API as msgspec Structs: what the control plane answers (and
documents in its OpenAPI document) and what the SDK (``services.client``) decodes.

This module imports neither Litestar nor nats-py, so a client that only talks HTTP can use it.
A field that is ``UNSET`` is left out of the JSON (``"step"`` of a record that has none); one that
is ``None`` is sent as ``null``. Objects may gain keys in later versions: decode leniently.

Requests (the control plane parses them itself, so that a bad body gets the same 400 or 422 with a
``field`` on every endpoint; these Structs document them)::

    POST /workflows/{name}/runs     the start event's fields (a JSON object)
    POST /runs/{id}/events          SendEvent
    POST /runs/{id}/cancel          CancelRequest (optional)
    POST /runs/{id}/rollback        RollbackRequest
    POST /runs/{id}/fork            ForkRequest
    POST /sessions                  CreateSession
    POST /sessions/{id}/runs        the start event's fields
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from engine.runtime.describe import WorkflowInfo

__all__ = [
    "CancelAnswer",
    "CancelRequest",
    "CreateSession",
    "ErrorBody",
    "EventAccepted",
    "ForkAnswer",
    "ForkRequest",
    "Health",
    "NotReady",
    "Ready",
    "RecordView",
    "RecordsPage",
    "Resumed",
    "RetryAnswer",
    "RollbackAnswer",
    "RollbackRequest",
    "RunError",
    "RunLine",
    "RunLinks",
    "RunPage",
    "RunView",
    "SendEvent",
    "ServiceView",
    "SessionDeleted",
    "SessionDetail",
    "SessionRunAnswer",
    "SessionView",
    "StartAnswer",
    "StateView",
    "StopEventView",
    "StreamEvent",
    "WaitView",
    "WaitedRun",
    "WorkflowView",
]


# ---- errors ---------------------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error's JSON body (other keys may be present, e.g. ``run_status`` on a 409)."""

    error: str
    """What went wrong, in words."""
    status: int
    """The HTTP status code again."""
    field: str | UnsetType = UNSET
    """The parameter or body field at fault (400, 422)."""
    errors: list[dict[str, Any]] | UnsetType = UNSET
    """Every problem found, when there were several (400, 422)."""
    retry_after: int | UnsetType = UNSET
    """Seconds to wait before trying again (503; also the ``Retry-After`` header)."""


# ---- requests -------------------------------------------------------------------------------------


class SendEvent(msgspec.Struct, kw_only=True):
    """``POST /runs/{id}/events``: an event delivered to a run from outside."""

    type: str
    """The event's class name: one a step accepts, or one a step of the run waits for."""
    data: dict[str, Any] = {}
    """The event's fields, checked against its JSON schema."""
    step: str | None = None
    """Deliver to this step only (default: every step that accepts the type)."""


class CancelRequest(msgspec.Struct, kw_only=True):
    """``POST /runs/{id}/cancel`` (the body may be left out)."""

    reason: str = ""
    """Recorded in ``RunCancelled``."""


class RollbackRequest(msgspec.Struct, kw_only=True):
    """``POST /runs/{id}/rollback``."""

    to_seq: int
    """The last stream sequence of the run that still counts (>= 1)."""
    reason: str = ""
    """Recorded in ``RolledBack``."""


class ForkRequest(msgspec.Struct, kw_only=True):
    """``POST /runs/{id}/fork``."""

    at_seq: int
    """The last stream sequence of the run to copy (>= 1)."""
    run_id: str | None = None
    """The new run's id (default: a new one)."""


class CreateSession(msgspec.Struct, kw_only=True):
    """``POST /sessions``."""

    workflow: str
    """The workflow every run of the session runs."""
    id: str | None = None
    """The session's id (default: 32 hex digits)."""


# ---- health -----------------------------------------------------------------------------------------


class Health(msgspec.Struct, kw_only=True):
    """``GET /health``: ``status`` is ``ok``, or ``degraded`` while NATS is not connected."""

    status: str
    nats: bool
    version: str


class Ready(msgspec.Struct, kw_only=True):
    """``GET /ready`` when ready: the run stream and its cluster leader (``None`` unclustered)."""

    status: str
    ready: bool
    nats: bool
    stream: str
    leader: str | None


class NotReady(ErrorBody, kw_only=True):
    """``GET /ready`` answering 503: the error body, and whether NATS is connected."""

    ready: bool = False
    nats: bool = False


# ---- workflows and services -------------------------------------------------------------------------


class WorkflowView(WorkflowInfo, frozen=True, kw_only=True):
    """A workflow of the catalog (``WorkflowInfo``) and who serves it now."""

    instances: int
    """Live worker processes serving it."""
    services: list[str]
    """Their service names, sorted."""


class ServiceView(msgspec.Struct, kw_only=True):
    """``GET /services``: one worker process as it last reported itself (its registry entry)."""

    service: str
    instance: str
    host: str
    pid: int
    version: str
    workflows: list[WorkflowInfo]
    started_at: str
    heartbeat_at: str
    ttl: float
    """Seconds the entry outlives ``heartbeat_at`` unless refreshed."""
    stats: dict[str, int]
    """The executor's counters at the last heartbeat."""
    metrics_port: int = 0
    """The port of its Prometheus metrics (``http://<host>:<port>/metrics``), 0 for none."""
    handoff_steps: list[str] = msgspec.field(default_factory=list)
    """The steps whose runs it takes hand-offs for (run affinity); empty for none."""


# ---- runs -------------------------------------------------------------------------------------------


class RunLinks(msgspec.Struct, kw_only=True):
    """The API paths of a run."""

    self_: str = msgspec.field(name="self")
    events: str
    stream: str


class StartAnswer(msgspec.Struct, kw_only=True):
    """``POST /workflows/{name}/runs``: the run started (201), already started by the same
    ``run_id``/``Idempotency-Key`` (200, ``created`` false) or queued because no live process
    serves the workflow (202, with ``reason``). With ``?wait=true`` the body is the run's view
    (``RunView``) with ``queued``, ``created`` and ``links`` added: 200 once it ended, 202 if it
    still runs after ``timeout``."""

    run_id: str
    workflow: str
    status: str
    """``running``, ``queued``, or with ``?wait=true`` the run's status."""
    queued: bool
    created: bool
    """Whether this request started the run."""
    links: RunLinks
    reason: str | UnsetType = UNSET
    """Why the run is queued."""


class StopEventView(msgspec.Struct, kw_only=True):
    """The StopEvent that ended a run: its class name and fields."""

    type: str
    data: dict[str, Any]


class RunError(msgspec.Struct, kw_only=True):
    """How a run failed or was cancelled: ``type`` is ``StepFailedError`` (with the step, the
    exception's type and message, its traceback and the trigger's sequence),
    ``WorkflowCancelledError``, or the run's error type (``WorkflowTimeoutError``,
    ``DeadLetteredError`` with ``dead_letter``, ...)."""

    type: str
    message: str
    step: str | UnsetType = UNSET
    error_type: str | UnsetType = UNSET
    traceback: str | UnsetType = UNSET
    trigger: int | None | UnsetType = UNSET
    dead_letter: dict[str, Any] | UnsetType = UNSET
    """The trigger no step could take: where, which step, why."""


class WaitView(msgspec.Struct, kw_only=True):
    """An open ``ctx.wait_for_event`` wait of a run: what the step waits for, since when."""

    step: str
    event: str | None
    """The awaited event's type name."""
    wait_id: str
    """The wait's id in its step (``waiter_id``, or ``w<n>`` for the n-th wait)."""
    trigger: int
    """Stream sequence of the event that triggered the waiting step."""
    seq: int
    """Stream sequence of the ``StepSuspended`` record of the wait."""
    since: str | None
    """When the step suspended (RFC 3339 UTC)."""
    timeout_at: str | None
    """When the wait times out (RFC 3339 UTC), ``None`` without a timeout."""
    requirements: dict[str, Any] = {}
    """Field values the awaited event must have."""
    event_schema: dict[str, Any] = {}
    """JSON schema of the awaited event's fields."""


class RunView(msgspec.Struct, kw_only=True):
    """``GET /runs/{id}``: a run folded from its log."""

    run_id: str
    workflow: str
    status: str
    """``running``, ``waiting`` (not ended, with an open ``wait_for_event`` wait: see
    ``waiting_for``), ``completed``, ``failed`` or ``cancelled``."""
    started_at: str | None
    """RFC 3339 UTC."""
    ended_at: str | None
    duration_ms: float | None
    result: Any
    """A plain StopEvent's ``result``, or a StopEvent subclass's fields."""
    stop_event: StopEventView | None
    error: RunError | None
    steps_completed: int
    steps_failed: int
    records: int
    last_seq: int
    """The stream sequence of the run's last record."""
    state: dict[str, Any]
    """The run's context state."""
    waiting_for: list[WaitView] = []
    """The run's open ``wait_for_event`` waits, oldest first (empty once it ended)."""


class StateView(RunView, kw_only=True):
    """``GET /runs/{id}/state``: the run folded up to ``at`` (``None``: all of it), with what time
    travel needs: ``[trigger seq, step]`` pairs done and pending, ``[trigger seq, step, wait id]``
    of the steps waiting for an event, the rollback ``epoch`` and ``[to_seq, marker_seq]`` of each
    rollback."""

    at: int | None
    done: list[tuple[int, str]]
    pending: list[tuple[int, str]]
    waiting: list[tuple[int, str, str]]
    epoch: int
    rolled_back: list[tuple[int, int]]


class WaitedRun(RunView, kw_only=True):
    """``POST /workflows/{name}/runs?wait=true``: the run's view when it ended (200) or when the
    wait timed out (202), with the start's ``queued``, ``created`` and ``links``."""

    queued: bool
    created: bool
    links: RunLinks


class RunLine(msgspec.Struct, kw_only=True):
    """One run of ``GET /runs``; ``seq`` is its ``RunStarted``'s stream sequence."""

    run_id: str
    workflow: str
    status: str
    """``running``, ``waiting`` (not ended, with an open ``wait_for_event`` wait), ``completed``,
    ``failed`` or ``cancelled``."""
    started_at: str | None
    ended_at: str | None
    seq: int


class RunPage(msgspec.Struct, kw_only=True):
    """``GET /runs``: runs newest first (``order=newest``, the default) or in the order they
    started (``order=oldest``); ``next_cursor`` (``None`` at the end) is the ``cursor`` of the
    next page."""

    runs: list[RunLine]
    next_cursor: int | None


class RecordView(msgspec.Struct, kw_only=True):
    """One record of a run's log (``GET /runs/{id}/events``, and each SSE event's data).

    ``kind`` is ``evt`` (an event), ``sys`` (the engine's bookkeeping) or ``out`` (stream output);
    the headers that are set come as ``step``, ``target``, ``class`` (``module:QualName`` of stream
    output), ``worker``, ``trigger`` and ``attempt``; ``completes_step`` marks a record that is its
    step's whole commit; ``data`` is the payload, parsed.
    """

    seq: int
    time: str | None
    kind: str
    type: str
    subject: str
    step: str | UnsetType = UNSET
    target: str | UnsetType = UNSET
    class_: str | UnsetType = msgspec.field(default=UNSET, name="class")
    worker: str | UnsetType = UNSET
    trigger: int | UnsetType = UNSET
    attempt: int | UnsetType = UNSET
    completes_step: bool | UnsetType = UNSET
    data: Any = None


class StreamEvent(msgspec.Struct, kw_only=True):
    """One Server-Sent Event of ``GET /runs/{id}/stream`` (the stream also carries ``:
    keep-alive`` comments while the run is idle)."""

    id: str
    """The record's stream sequence (send it back as ``Last-Event-ID`` to resume)."""
    event: str
    """The record's kind: ``evt``, ``sys`` or ``out``."""
    data: str
    """The record as JSON (``RecordView``)."""


class RecordsPage(msgspec.Struct, kw_only=True):
    """``GET /runs/{id}/events``."""

    run_id: str
    workflow: str
    records: list[RecordView]


class EventAccepted(msgspec.Struct, kw_only=True):
    """``POST /runs/{id}/events``: where the event was appended, or that a send with the same
    ``Idempotency-Key`` already appended it (``duplicate``)."""

    run_id: str
    type: str
    seq: int | None
    """The event's stream sequence (for a duplicate, the original's; ``None`` when the log could not
    tell)."""
    duplicate: bool


class CancelAnswer(msgspec.Struct, kw_only=True):
    """``POST /runs/{id}/cancel``."""

    run_id: str
    status: str


class RetryAnswer(msgspec.Struct, kw_only=True):
    """``POST /runs/{id}/retry``: the step resumed, on which trigger, its attempt number."""

    run_id: str
    status: str
    step: str
    trigger: int
    attempt: int
    duplicate: bool


class Resumed(msgspec.Struct, kw_only=True):
    """A step a rollback runs again, and the sequence of the event it runs on."""

    trigger: int
    step: str


class RollbackAnswer(msgspec.Struct, kw_only=True):
    """``POST /runs/{id}/rollback``."""

    run_id: str
    to_seq: int
    marker_seq: int
    """Sequence of the ``sys.RolledBack`` record."""
    epoch: int
    resumed: list[Resumed]


class ForkAnswer(msgspec.Struct, kw_only=True):
    """``POST /runs/{id}/fork``: the new run and how many records were copied."""

    run_id: str
    workflow: str
    forked_from: str
    at_seq: int
    records: int
    links: RunLinks


# ---- sessions ---------------------------------------------------------------------------------------


class SessionView(msgspec.Struct, kw_only=True):
    """A session: its workflow and the ids of its runs, oldest first."""

    id: str
    workflow: str
    runs: list[str]
    created_at: str
    """RFC 3339 UTC."""


class SessionDetail(SessionView, kw_only=True):
    """``GET /sessions/{id}``: the session and the status of each run (same order as ``runs``)."""

    runs_status: list[str]


class SessionRunAnswer(msgspec.Struct, kw_only=True):
    """``POST /sessions/{id}/runs``: the run started, with the state it starts with."""

    run_id: str
    workflow: str
    session: str
    status: str
    initial_state: dict[str, Any]
    links: RunLinks


class SessionDeleted(msgspec.Struct, kw_only=True):
    """``DELETE /sessions/{id}``."""

    id: str
    deleted: bool
