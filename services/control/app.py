"""The control plane: jetloom's HTTP API (Litestar), stateless over NATS.

Everything it answers comes from the log (runs) and the registry buckets (services, workflows), so
any number of replicas behind a load balancer behave as one. OpenAPI is served at ``/schema``.

Endpoints (JSON in and out; every error body is ``{"error": <reason>, "status": <code>, ...}``)::

    GET  /health                        liveness (always 200 while serving); ``nats``: connected or not
    GET  /ready                         200 while NATS is connected and the run stream has a leader, else 503
    GET  /services                      live worker processes (registry entries)
    GET  /workflows                     the workflow catalog, with live instance counts
    GET  /workflows/{name}              steps, events (JSON schemas), graph, start event
    POST /workflows/{name}/runs         body: start event fields; ?wait=true&timeout=S&run_id=ID
    GET  /runs                          ?workflow=&status=&limit=&cursor=
    GET  /runs/{id}                     status, result or error, timestamps, state
    GET  /runs/{id}/events              every record of the run (?after=SEQ)
    GET  /runs/{id}/stream              Server-Sent Events, one per record, id = stream sequence
    POST /runs/{id}/events              body: {"type": ..., "data": {...}, "step": optional}
    POST /runs/{id}/cancel              body (optional): {"reason": ...}
    GET  /runs/{id}/state?at=N          the run folded up to sequence N   (services.control.timetravel)
    POST /runs/{id}/rollback            body: {"to_seq": N}
    POST /runs/{id}/fork                body: {"at_seq": N, "run_id": optional}
    POST /runs/{id}/retry               retry a failed run from its failed step (409 if not failed)
    POST /sessions, GET /sessions, GET|DELETE /sessions/{id}, POST /sessions/{id}/runs
                                        (services/control/sessions.py)

Every name and id from outside is checked before it reaches NATS (``services.control.validation``);
NATS being unavailable answers 503 with ``Retry-After`` (``services.control.errors``); with API
tokens configured every endpoint but ``/health``, ``/ready`` and ``/schema`` needs a bearer token
with its scope (``services.control.auth``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any, Literal

import msgspec
import orjson
from jsonschema import Draft202012Validator
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.params import FromQuery, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from engine.jetstream.backend import NatsBackend
from engine.jetstream.connection import NatsConnectError, NatsSettings, describe_error
from engine.jetstream.retry import LogUnavailableError, retrying
from engine.model.durations import seconds
from engine.ports.backend import Backend, Readiness
from engine.ports.log import EventLog
from engine.ports.registry import RegistryView, WorkflowInfo
from engine.ports.runindex import RunIndex
from engine.runtime import commands
from engine.runtime.inprocess import new_run_id
from engine.runtime.recovery import (
    RunNotRetryableError,
    retry_run,
    run_timeout_at,
    schedule_run_timeout,
)
from engine.state.fold import RunState
from engine.state.orphans import OrphanFilter
from engine.wire.codec import decode_record
from services.registry import jetloom_version

from . import validation as v
from .auth import OPEN_WARNING, PUBLIC, ApiAuth, needs
from .errors import (
    ERROR_RESPONSES,
    RETRY_AFTER_S,
    ApiError,
    http_error,
    unexpected_error,
)
from .queries import (
    is_terminal,
    load_run,
    record_view,
    run_links,
    run_view,
)

__all__ = ["ApiError", "ControlPlane", "create_app"]

RunStatus = Literal["running", "completed", "failed", "cancelled"]  # engine.ports.runindex.RUN_STATUSES

logger = logging.getLogger("jetloom.control")

DEFAULT_MAX_BODY = 1 << 20  # bytes; larger request bodies get 413
DEFAULT_WAIT = 30.0  # seconds ?wait=true waits for a run to end by default
#: How long the rebuild of a closed connection keeps trying through transient failures (NATS
#: unreachable, a stream or bucket without a leader) before the process exits for its
#: supervisor: three leader elections of the longest kind (engine.jetstream.retry).
REBUILD_FOR = timedelta(seconds=60)
SSE_PING = 15.0  # seconds between keep-alive comments on an idle stream
READY_TIMEOUT = 2.0  # seconds /ready waits for the stream's info before it answers 503


def _not_found(what: str) -> ApiError:
    return ApiError(status_code=HTTP_404_NOT_FOUND, detail=what)


class ControlPlane:
    """The control plane's backend and settings; one per process, shared by requests.

    Attributes (set by ``start()``, replaced when the connection is rebuilt):
        backend: the backend (a ``NatsBackend``), owner of the connection.
        log: its event log.
        runs: its run index (listings, look-ups across runs).
        view: the live view of its registry.

    Args:
        nats_url: the NATS server URL(s), or ``NatsSettings`` (credentials, replicas).
        prefix: subject and bucket prefix (default ``jetloom``).
        wait_timeout: default seconds ``?wait=true`` waits (default 30).
        sse_ping: seconds between keep-alive comments on an idle SSE stream (default 15).
        rebuild_for: how long the rebuild of a connection nats-py closed retries transient
            failures (``timedelta`` or seconds; default 60 s, ``REBUILD_FOR``).
    """

    def __init__(
        self,
        nats_url: str | NatsSettings,
        *,
        prefix: str = "jetloom",
        wait_timeout: float = DEFAULT_WAIT,
        sse_ping: float = SSE_PING,
        rebuild_for: timedelta | float = REBUILD_FOR,
    ) -> None:
        self.nats_url = nats_url
        self.rebuild_for = rebuild_for
        self.prefix = prefix
        self.wait_timeout = wait_timeout
        self.sse_ping = sse_ping
        self.backend: Backend | None = None
        self.log: EventLog | None = None
        self.runs: RunIndex | None = None
        self.view: RegistryView | None = None
        self._validators: dict[tuple[str, bytes], Draft202012Validator] = {}
        self._ensured: set[bytes] = set()
        self._watch: asyncio.Task[None] | None = None
        self.broken: asyncio.Future[Exception]  # set by start()

    async def start(self) -> None:
        """Connect, set up the streams and open the registry view (once; later calls return).

        A connection that nats-py later closes for good (a server ``-ERR``, expired credentials)
        is rebuilt in the background: a new backend and registry view. Transient
        failures of the rebuild (NATS unreachable after the start-up attempts, a stream or
        bucket without a leader: ``engine.jetstream.retry.is_transient``) are retried with backoff for
        ``rebuild_for``; requests meanwhile get 503. A rebuild that fails for good (refused
        credentials, a refused set-up, or still transient after ``rebuild_for``) resolves
        ``broken``.

        Raises:
            engine.jetstream.connection.NatsConnectError: NATS unreachable or refused the credentials.
            engine.jetstream.retry.LogUnavailableError: the streams had no leader within the log's
                retry budget.
        """
        if self.backend is not None:
            return
        self.broken = asyncio.get_running_loop().create_future()
        self._use(*await self._open())
        self._watch = asyncio.create_task(self._rebuild_when_closed(), name="jetloom:cp-nats")

    def _use(self, backend: Backend, view: RegistryView) -> None:
        self.backend, self.log, self.runs, self.view = backend, backend.log, backend.runs, view

    async def _open(self) -> tuple[NatsBackend, RegistryView]:
        """A new backend, its streams set up and the registry view started; the connection is
        closed again when set-up fails (so that retries do not pile up connections)."""
        backend = await NatsBackend.connect(self.nats_url, prefix=self.prefix, name="jetloom-control-plane")
        try:
            view = await (await backend.registry()).view()
        except BaseException:
            await backend.close(drain=False)
            raise
        return backend, view

    async def _reopen(self) -> tuple[NatsBackend, RegistryView]:
        """``_open`` retried through transient failures for ``rebuild_for`` (``retrying``)."""

        async def attempt() -> tuple[NatsBackend, RegistryView]:
            try:
                return await self._open()
            except NatsConnectError as exc:
                if exc.permanent:  # refused credentials: no later attempt can succeed
                    raise
                raise LogUnavailableError(str(exc)) from exc  # (unreachable for now: retried)

        what = "rebuild of the NATS connection"
        try:
            return await retrying(what, attempt, retry_for=self.rebuild_for, initial_s=0.5, max_wait_s=5.0)
        except LogUnavailableError as exc:  # (one line that says how long it tried, for the exit)
            budget = seconds(self.rebuild_for)
            raise LogUnavailableError(f"{what} gave up after {budget:g} s: {exc}") from exc

    async def _rebuild_when_closed(self) -> None:
        while self.backend is not None:
            closed = await self.backend.closed()
            logger.warning("%s; connecting again", closed)
            try:
                backend, view = await self._reopen()
            except Exception as exc:  # refused, or still failing after rebuild_for
                logger.error("the NATS connection could not be rebuilt: %s", describe_error(exc))
                self.broken.set_result(exc)
                return
            old_backend, old_view = self.backend, self.view
            self._use(backend, view)
            with contextlib.suppress(Exception):
                if old_view is not None:
                    await old_view.stop()
                await old_backend.close()
            logger.warning("NATS connection rebuilt (%s)", describe_error(closed))

    async def wait_stopped(self, stop: asyncio.Event) -> None:
        """Wait until ``stop`` is set; raise the rebuild's error if the connection could not be
        rebuilt first (the process should exit for its supervisor)."""
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({stopping, self.broken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if self.broken.done() and not stop.is_set():
            raise self.broken.result()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.view is not None:
            await self.view.stop()
        if self.backend is not None:
            await self.backend.close()

    # ---- helpers used by the handlers -----------------------------------------------------

    async def workflow(self, name: str) -> WorkflowInfo:
        assert self.view is not None
        info = await self.view.workflow(name)
        if info is None:
            raise _not_found(f"no workflow named {name!r} has ever been served")
        return info

    async def run_workflow(self, run_id: str) -> str:
        assert self.runs is not None
        wf = await self.runs.find_workflow(run_id)
        if wf is None:
            raise _not_found(f"no run {run_id!r}")
        return wf

    def validate(self, info: WorkflowInfo, event_type: str, fields: Any) -> None:
        """Check ``fields`` against the event's schema; raise 422 naming the first bad field."""
        self.validate_schema(event_type, info.events.get(event_type) or {}, fields)

    def validate_schema(self, event_type: str, schema: dict[str, Any], fields: Any) -> None:
        """Check ``fields`` against a JSON schema; raise 422 naming the first bad field."""
        if not isinstance(fields, dict):
            raise ApiError(
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                detail=f"the {event_type} fields must be a JSON object, not {type(fields).__name__}",
            )
        if not schema:
            return
        key = (event_type, msgspec.json.encode(schema))
        validator = self._validators.get(key)
        if validator is None:
            validator = self._validators[key] = Draft202012Validator(schema)
        # errors about fields that were given come before missing ones
        errors = sorted(
            validator.iter_errors(fields),
            key=lambda e: (not e.absolute_path, [str(p) for p in e.absolute_path]),
        )
        if not errors:
            return
        listed = []
        for e in errors:
            path = ".".join(str(p) for p in e.absolute_path)
            if not path and e.validator == "required":
                path = e.message.split("'")[1] if "'" in e.message else ""
            listed.append({"field": path, "message": e.message})
        first = listed[0]
        where = f"field {first['field']!r}: " if first["field"] else ""
        raise ApiError(
            status_code=HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"{event_type}: {where}{first['message']}",
            extra={"field": first["field"], "errors": listed},
        )

    async def ensure_consumers(self, info: WorkflowInfo) -> None:
        """Create the workflow's step consumers if missing, so a run started before any worker
        waits in JetStream (existing consumers are left as the workers configured them)."""
        assert self.log is not None
        key = msgspec.json.encode([(s.name, s.accepts) for s in info.steps])
        if key in self._ensured:
            return
        for s in info.steps:
            await self.log.ensure_consumer(info.name, s.name, s.accepts, update=False)
        self._ensured.add(key)

    async def wait_for_end(self, workflow: str, run_id: str, timeout: float) -> RunState:
        """Fold the run while following it, until it ends or ``timeout`` seconds pass."""
        assert self.log is not None
        state = RunState(workflow, run_id)
        records = self.log.follow(workflow, run_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), contextlib.aclosing(records):  # type: ignore[type-var]
                async for raw in records:
                    state.apply(decode_record(raw))
                    if state.terminal:
                        break
        return state


def _cp(state: State) -> ControlPlane:
    """The control plane, for a handler that needs NATS.

    Raises:
        LogUnavailableError / what ``NatsBackend.check_connected`` raises: NATS is not connected
            (503 with ``Retry-After`` at once, rather than after a request's timeout).
    """
    cp: ControlPlane = state.control_plane
    if cp.backend is None:
        raise LogUnavailableError("NATS is not connected yet")
    cp.backend.check_connected()
    return cp


async def _json_body(request: Request[Any, Any, Any], *, required: bool) -> Any:
    body = await request.body()
    if not body.strip():
        if required:
            raise ApiError(status_code=HTTP_400_BAD_REQUEST, detail="the request body is empty")
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(status_code=HTTP_400_BAD_REQUEST, detail=f"the body is not JSON: {exc}") from None


# ---- handlers ---------------------------------------------------------------------------------


@get("/health", opt=PUBLIC, security=[{}])
async def health(state: State) -> dict[str, Any]:
    """Liveness: 200 while the process serves HTTP; ``nats`` says whether NATS is connected."""
    cp: ControlPlane = state.control_plane
    ok = cp.backend is not None and cp.backend.is_connected
    return {"status": "ok" if ok else "degraded", "nats": ok, "version": jetloom_version()}


@get("/ready", opt=PUBLIC, security=[{}], responses={503: ERROR_RESPONSES[503]})
async def ready(state: State) -> Response[dict[str, Any]]:
    """Readiness: 200 while NATS is connected and the run stream has a leader (on a server that
    is not clustered, a stream whose info can be read is led by it); 503 with the reason and
    ``Retry-After`` otherwise."""
    cp: ControlPlane = state.control_plane
    backend = cp.backend
    if backend is None:
        readiness = Readiness(ready=False, reason="NATS is not connected")
    else:
        readiness = await backend.ready(READY_TIMEOUT)
    if not readiness.ready:
        body = {
            "error": readiness.reason,
            "status": HTTP_503_SERVICE_UNAVAILABLE,  # the error body every 503 has
            "ready": False,
            "nats": backend is not None and backend.is_connected,
            "retry_after": RETRY_AFTER_S,
        }
        return Response(
            body, status_code=HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)}
        )
    body = {"status": "ready", "ready": True, "nats": True, "stream": readiness.stream, "leader": readiness.leader}
    return Response(body, status_code=HTTP_200_OK)


@get("/services", opt=needs("read"), responses=ERROR_RESPONSES)
async def services(state: State) -> list[dict[str, Any]]:
    """Live worker processes, as they last reported in their registry heartbeats."""
    view = _cp(state).view
    assert view is not None
    entries = sorted(view.services.values(), key=lambda e: (e.service, e.instance))
    return [msgspec.to_builtins(e) for e in entries]


def _workflow_body(info: WorkflowInfo, view: RegistryView) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(info)
    live = view.serving(info.name)
    body["instances"] = len(live)
    body["services"] = sorted({e.service for e in live})
    return body


@get("/workflows", opt=needs("read"), responses=ERROR_RESPONSES)
async def workflows(state: State) -> list[dict[str, Any]]:
    """Every workflow ever served, with how many live processes serve it now."""
    view = _cp(state).view
    assert view is not None
    return [_workflow_body(w, view) for w in sorted(view.workflows.values(), key=lambda w: w.name)]


@get("/workflows/{name:str}", opt=needs("read"), responses=ERROR_RESPONSES)
async def workflow_detail(state: State, name: v.Name) -> dict[str, Any]:
    """A workflow's steps, events (JSON schemas), graph and start event."""
    cp = _cp(state)
    assert cp.view is not None
    return _workflow_body(await cp.workflow(name), cp.view)


@post("/workflows/{name:str}/runs", status_code=HTTP_201_CREATED, opt=needs("run"), responses=ERROR_RESPONSES)
async def start_run(
    state: State,
    request: Request[Any, Any, Any],
    name: v.Name,
    wait: FromQuery[bool] = False,
    timeout: Annotated[float | None, QueryParameter(gt=0, le=86_400)] = None,
    run_id: v.OptionalName = None,
    run_timeout: Annotated[float | None, QueryParameter(gt=0, le=365 * 86_400)] = None,
    idempotency_key: v.StartIdempotencyKey = None,
) -> Response[dict[str, Any]]:
    """Start a run; the body holds the start event's fields.

    With ``?wait=true`` the response comes when the run ends (or after ``timeout`` seconds, with
    the run still running, status 202). ``run_id`` (or an ``Idempotency-Key`` header) makes the
    start idempotent: the same id starts one run. A workflow no live process serves is accepted
    and queued in JetStream until a worker comes (``"queued": true``, status 202).
    ``run_timeout`` (seconds) fails the run with ``WorkflowTimeoutError`` if it has not ended by
    then: a JetStream message schedule, so it holds while no process runs.
    """
    cp = _cp(state)
    assert cp.log is not None and cp.view is not None
    info = await cp.workflow(name)
    fields = await _json_body(request, required=False)
    cp.validate(info, info.start_event, fields)
    rid = run_id or idempotency_key or new_run_id()
    await cp.ensure_consumers(info)
    # (the deadline goes into RunStarted: whoever ends the run then removes the schedule)
    timeout_at = run_timeout_at(run_timeout) if run_timeout is not None else 0
    res = await commands.append_start(
        cp.log,
        info.name,
        rid,
        info.start_event,
        commands.event_payload(info.start_event, fields),
        timeout_at_ns=timeout_at,
    )
    if run_timeout is not None:
        await schedule_run_timeout(cp.log, info.name, rid, run_timeout, at_ns=timeout_at)
    queued = not cp.view.serving(info.name)
    links = run_links(rid)
    if wait:
        st = await cp.wait_for_end(info.name, rid, timeout or cp.wait_timeout)
        body = {**run_view(st), "queued": queued, "created": not res.duplicate, "links": links}
        return Response(body, status_code=HTTP_200_OK if st.terminal else HTTP_202_ACCEPTED)
    body = {
        "run_id": rid,
        "workflow": info.name,
        "status": "queued" if queued else "running",
        "queued": queued,
        "created": not res.duplicate,
        "links": links,
    }
    if queued:
        body["reason"] = f"no live service serves {info.name!r}; the run waits in JetStream"
    code = HTTP_202_ACCEPTED if queued else (HTTP_201_CREATED if not res.duplicate else HTTP_200_OK)
    return Response(body, status_code=code, headers={"Location": links["self"]})


@get("/runs", opt=needs("read"), responses=ERROR_RESPONSES)
async def runs(
    state: State,
    workflow: v.OptionalName = None,
    status: FromQuery[RunStatus | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
    cursor: v.Seq = 0,
) -> dict[str, Any]:
    """Runs in the order they started; ``next_cursor`` fetches the next page."""
    cp = _cp(state)
    assert cp.runs is not None
    found, nxt = await cp.runs.list_runs(workflow=workflow, status=status, limit=limit, cursor=cursor)
    return {"runs": [msgspec.to_builtins(r) for r in found], "next_cursor": nxt}


@get("/runs/{run_id:str}", opt=needs("read"), responses=ERROR_RESPONSES)
async def run_detail(state: State, run_id: v.Name) -> dict[str, Any]:
    """A run's status, result or error, timestamps and state, folded from its log."""
    cp = _cp(state)
    assert cp.log is not None
    wf = await cp.run_workflow(run_id)
    st, _ = await load_run(cp.log, wf, run_id)
    return run_view(st)


@get("/runs/{run_id:str}/events", opt=needs("read"), responses=ERROR_RESPONSES)
async def run_events(state: State, run_id: v.Name, after: v.Seq = 0) -> dict[str, Any]:
    """Every record of the run after sequence ``after``, in order (orphans of a commit that did not
    stand left out: ``engine.wire.commit``)."""
    cp = _cp(state)
    assert cp.log is not None
    wf = await cp.run_workflow(run_id)
    orphans = OrphanFilter()
    records = [r for r in await cp.log.read(wf, run_id) if orphans.counts(r) and r.seq > after]
    return {"run_id": run_id, "workflow": wf, "records": [record_view(r) for r in records]}


@get("/runs/{run_id:str}/stream", opt=needs("read"), responses=ERROR_RESPONSES, media_type="text/event-stream")
async def run_stream(
    state: State,
    run_id: v.Name,
    after: v.OptionalSeq = None,
    last_event_id: v.LastEventId = None,
) -> ServerSentEvent:
    """The run's records as Server-Sent Events, pushed as they are committed.

    Each event has ``id:`` = stream sequence, ``event:`` = kind (evt/sys/out) and ``data:`` = the
    record as in ``/runs/{id}/events``. Reconnect with ``Last-Event-ID`` (or ``?after=``) to
    resume without loss or repeats. The stream ends after the record that ends the run. Orphans
    (messages of a commit that did not stand, ``engine.wire.commit``) are left out.
    """
    cp = _cp(state)
    assert cp.log is not None
    wf = await cp.run_workflow(run_id)
    last = min(max(after or 0, int(last_event_id or 0)), v.SEQ_MAX)
    assert cp.runs is not None
    end = await cp.runs.terminal_seq(wf, run_id)
    return ServerSentEvent(_sse(cp, wf, run_id, last, end))


async def _sse(
    cp: ControlPlane, workflow: str, run_id: str, after: int, end: int | None
) -> AsyncGenerator[ServerSentEventMessage, None]:
    assert cp.log is not None
    if end is not None and after >= end:
        return
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
    done = object()

    async def pump() -> None:
        assert cp.log is not None
        try:
            orphans = OrphanFilter()  # (it needs the commit heads before ``after`` too)
            for raw in await cp.log.read(workflow, run_id, up_to_seq=after) if after else ():
                orphans.counts(raw)
            records = cp.log.follow(workflow, run_id, after_seq=after)
            async with contextlib.aclosing(records):  # type: ignore[type-var]
                async for raw in records:
                    if not orphans.counts(raw):
                        continue
                    await queue.put(raw)
                    if is_terminal(raw):
                        break
        finally:
            await queue.put(done)

    task = asyncio.create_task(pump(), name=f"jetloom:sse:{run_id}")
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), cp.sse_ping)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            if item is done:
                return
            view = record_view(item)
            yield ServerSentEventMessage(data=orjson.dumps(view).decode(), event=view["kind"], id=item.seq)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@post("/runs/{run_id:str}/events", status_code=HTTP_202_ACCEPTED, opt=needs("run"), responses=ERROR_RESPONSES)
async def send_event(
    state: State,
    request: Request[Any, Any, Any],
    run_id: v.Name,
    idempotency_key: v.EventIdempotencyKey = None,
) -> dict[str, Any]:
    """Deliver an event to a run from outside (e.g. human input).

    Body: ``{"type": "EventName", "data": {...fields}, "step": "optional target step"}``; the
    fields are validated against the workflow's schema of that event. An ``Idempotency-Key``
    header makes a retried request append once.
    """
    cp = _cp(state)
    assert cp.log is not None
    wf = await cp.run_workflow(run_id)
    info = await cp.workflow(wf)
    body = await _json_body(request, required=True)
    if not isinstance(body, dict):
        raise ApiError(status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail="the body must be a JSON object")
    event_type = body.get("type")
    if not isinstance(event_type, str):
        raise ApiError(
            status_code=HTTP_422_UNPROCESSABLE_ENTITY,
            detail="'type' (the event's class name) is required",
            extra={"field": "type"},
        )
    v.name(event_type, "type", "event type")
    target = body.get("step")
    if target is not None:
        v.name(target, "step")
    data = body.get("data", {})
    key = idempotency_key
    accepted = info.accepted_events() - {info.start_event}
    if event_type in accepted:
        cp.validate(info, event_type, data)
        assert cp.runs is not None
        ended = await cp.runs.terminal_seq(wf, run_id) is not None
    else:  # not a step's input: maybe what a waiting step awaits (ctx.wait_for_event)
        st, records = await load_run(cp.log, wf, run_id)
        ended = st.terminal
        if key is not None:  # a retried send whose event is in the log already
            msg_id = f"{run_id}:ext:{key}"
            for r in records:
                if r.headers.get("Nats-Msg-Id") == msg_id:
                    return {"run_id": run_id, "type": event_type, "seq": r.seq, "duplicate": True}
        awaited = {w.event_type: w.event_schema for _, w in st.open_event_waits()}
        if event_type not in awaited:
            waiting = f"; waits for: {', '.join(sorted(awaited))}" if awaited else ""
            raise ApiError(
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                detail=f"{wf} has no step that accepts {event_type!r} and no step of run "
                f"{run_id} waits for it (accepted: {', '.join(sorted(accepted))}{waiting})",
                extra={"field": "type"},
            )
        cp.validate_schema(event_type, awaited[event_type], data)
    if target is not None and target not in {s.name for s in info.steps}:
        raise ApiError(
            status_code=HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"{wf} has no step {target!r}",
            extra={"field": "step"},
        )
    if ended:
        raise ApiError(status_code=HTTP_409_CONFLICT, detail=f"run {run_id} has already ended")
    res = await commands.append_event(
        cp.log,
        wf,
        run_id,
        event_type,
        commands.event_payload(event_type, data),
        target=target,
        idempotency_key=key,
    )
    return {"run_id": run_id, "type": event_type, "seq": res.last_seq, "duplicate": res.duplicate}


@post("/runs/{run_id:str}/cancel", status_code=HTTP_202_ACCEPTED, opt=needs("admin"), responses=ERROR_RESPONSES)
async def cancel_run(state: State, request: Request[Any, Any, Any], run_id: v.Name) -> dict[str, Any]:
    """Cancel a run: records ``RunCancelled``; no step of the run starts afterwards."""
    cp = _cp(state)
    assert cp.log is not None
    wf = await cp.run_workflow(run_id)
    body = await _json_body(request, required=False)
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    if not isinstance(reason, str):
        raise ApiError(status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail="'reason' must be a string", extra={"field": "reason"})
    st, _ = await load_run(cp.log, wf, run_id)
    if st.terminal:
        raise ApiError(status_code=HTTP_409_CONFLICT, detail=f"run {run_id} has already ended ({st.status})", extra={"run_status": st.status})
    await commands.append_cancel(cp.log, wf, run_id, reason)
    return {"run_id": run_id, "status": "cancelled"}


@post("/runs/{run_id:str}/retry", status_code=HTTP_202_ACCEPTED, opt=needs("admin"), responses=ERROR_RESPONSES)
async def retry_failed_run(state: State, run_id: v.Name) -> dict[str, Any]:
    """Retry a failed run from the step that failed (e.g. after a code fix and a worker restart):
    appends ``Resume(reason="manual")`` for that step; the run is running again. 409 if the run is
    not failed, or failed other than in a step (a run timeout)."""
    cp = _cp(state)
    assert cp.log is not None
    wf = await cp.run_workflow(run_id)
    try:
        resume, res = await retry_run(cp.log, wf, run_id)
    except RunNotRetryableError as exc:
        raise ApiError(
            status_code=HTTP_409_CONFLICT, detail=exc.message, extra={"run_status": exc.status}
        ) from None
    return {
        "run_id": run_id,
        "status": "running",
        "step": resume.step,
        "trigger": resume.trigger,
        "attempt": resume.attempt,
        "duplicate": res.duplicate,
    }


def create_app(
    nats_url: str | NatsSettings = "nats://127.0.0.1:4222",
    *,
    prefix: str = "jetloom",
    max_body_size: int = DEFAULT_MAX_BODY,
    wait_timeout: float = DEFAULT_WAIT,
    sse_ping: float = SSE_PING,
    debug: bool = False,
    auth: ApiAuth | None = None,
) -> Litestar:
    """The control plane's ASGI app (serve it with uvicorn).

    Args:
        nats_url: the NATS server URL(s), or ``NatsSettings`` (credentials, replicas).
        prefix: subject and bucket prefix (default ``jetloom``).
        max_body_size: request bodies above this many bytes get 413 (default 1 MiB).
        wait_timeout: default seconds for ``?wait=true`` (default 30).
        sse_ping: seconds between keep-alive comments on idle SSE streams (default 15).
        auth: the API tokens (``services.control.auth.resolve_auth``); ``None`` (default) leaves
            the API open, and the app logs one warning line saying so at start.
    """
    from .sessions import HANDLERS as SESSION_HANDLERS  # imports this module
    from .timetravel import HANDLERS as TIMETRAVEL  # it imports this module's helpers

    cp = ControlPlane(nats_url, prefix=prefix, wait_timeout=wait_timeout, sse_ping=sse_ping)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        if auth is None:
            logger.warning(OPEN_WARNING)
        await cp.start()
        app.state.control_plane = cp
        try:
            yield
        finally:
            await cp.stop()

    return Litestar(
        state=State({"control_plane": cp}),  # (started before uvicorn by ControlPlaneServer)
        # the process's own logging stays as the command set it up: Litestar's default takes over
        # the root logger with a queue thread, whose lines would come after a command's last one
        logging_config=LoggingConfig(configure_root_logger=False),
        route_handlers=[
            health,
            ready,
            services,
            workflows,
            workflow_detail,
            start_run,
            runs,
            run_detail,
            run_events,
            run_stream,
            send_event,
            cancel_run,
            *TIMETRAVEL,
            retry_failed_run,
            *SESSION_HANDLERS,
        ],
        lifespan=[lifespan],
        # one place maps errors to responses: NATS unavailable -> 503 + Retry-After (errors.py)
        exception_handlers={
            ValidationException: v.parameter_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
        guards=[auth.guard] if auth is not None else None,
        security=auth.security if auth is not None else None,
        request_max_body_size=max_body_size,
        openapi_config=OpenAPIConfig(
            title="jetloom control plane",
            version=jetloom_version(),
            **({"components": auth.components} if auth is not None else {}),
        ),
        debug=debug,
    )
