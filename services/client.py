"""The Python SDK: drive jetloom over its HTTP API (``services.control``).

::

    async with Client("http://127.0.0.1:8000") as client:
        result = await client.run("DocIndex", root="/usr/lib/python3.11")   # wait for the result
        handle = await client.start(DocIndex, root=...)                     # or follow it
        async for ev in handle.stream():
            print(ev)                                                       # typed when importable
        print(await handle.result())

    with SyncClient("http://127.0.0.1:8000") as client:                     # the same, blocking
        print(client.run("DocIndex", root=...))
        session = client.create_session("Chat")                             # SyncSessionHandle
        session.run(text="hi")

``RunHandle.stream()`` reconnects after a dropped connection with ``Last-Event-ID``, so no event
is lost or repeated. With an API token (``Client(url, token=...)``, default: the environment
variable ``JETLOOM_API_TOKEN``) every request, streams included, carries
``Authorization: Bearer <token>``. Workflows can be named by string or passed as classes (then their events
come back typed); event classes are also looked up by the ``module:QualName`` the log records and
imported when that module is importable here. The answers the SDK reads fields from are decoded
with the control plane's own body types (``services.api_models``); methods documented as returning
a view return it as a ``dict``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import httpx
import msgspec
import orjson
from httpx_sse import EventSource
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from engine.model.errors import (
    DeadLetteredError,
    JetloomError,
    NoLiveWorkerWarning,
    RunNotFoundError,
    StepFailedError,
    WorkflowCancelledError,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
)
from engine.model.events import (
    Event,
    StopEvent,
    event_fields,
    event_from_fields,
    event_name,
    known_event,
)
from engine.state.ending import ends_run
from engine.workflow import Workflow
from services.api_models import ForkAnswer, SessionRunAnswer, SessionView, StartAnswer

__all__ = [
    "ApiError",
    "Client",
    "RunHandle",
    "SessionHandle",
    "SyncClient",
    "SyncRunHandle",
    "SyncSessionHandle",
]

DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_ENV = "JETLOOM_API_TOKEN"  # the API token a client sends when none is given
RECONNECT_FOR = 60.0  # seconds a dropped stream keeps trying to reconnect
RESULT_POLL_S = 0.2  # pause before ``result()`` follows a run a retry or rollback reopened
UNAVAILABLE_FOR = 30.0  # seconds a GET retries while the control plane answers 503 (NATS unavailable)

T = TypeVar("T")


class ApiError(JetloomError):
    """The control plane answered with an error.

    Attributes:
        status: the HTTP status code.
        reason: the ``error`` of the JSON body.
        body: the whole JSON body (``field`` names the offending field on 422).
    """

    def __init__(self, status: int, reason: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
        self.body = body or {}


class RunNotFound(ApiError, RunNotFoundError):
    """404 for a run."""


def _unavailable(exc: BaseException) -> bool:
    """A 503: NATS or the run stream is unavailable for now (e.g. a JetStream leader election)."""
    return isinstance(exc, ApiError) and exc.status == 503


def _error(resp: httpx.Response, path: str) -> ApiError:
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text}
    reason = body.get("error", resp.reason_phrase) if isinstance(body, dict) else str(body)
    cls = RunNotFound if resp.status_code == 404 and path.startswith("/runs/") else ApiError
    return cls(resp.status_code, reason, body if isinstance(body, dict) else None)


def _ends_run(record: dict[str, Any]) -> bool:
    """Whether a record (as streamed) ends its run; a step failure that an error handler took over
    (``handled_by``) does not."""
    if record["kind"] != "sys":
        return False
    data = record.get("data")
    return ends_run(record["type"], data.get("handled_by") if isinstance(data, dict) else None)


def _workflow_name(workflow: str | type[Workflow]) -> str:
    return workflow if isinstance(workflow, str) else workflow.workflow_name


def _event_class(name: str, path: str | None) -> type[Event] | None:
    cls = known_event(name, path)
    if cls is None and path and ":" in path:
        with contextlib.suppress(Exception):
            importlib.import_module(path.split(":", 1)[0])
            cls = known_event(name, path)
    return cls


def _typed(name: str, data: Any, path: str | None = None) -> Event | dict[str, Any]:
    cls = _event_class(name, path)
    if cls is not None and isinstance(data, dict):
        with contextlib.suppress(Exception):
            return event_from_fields(cls, data)
    return data if isinstance(data, dict) else {"value": data}


# a run view's error type -> the error its SDK call raises (others: WorkflowRuntimeError)
_RUN_ERRORS: dict[Any, type[WorkflowRuntimeError]] = {
    "WorkflowTimeoutError": WorkflowTimeoutError,
    "DeadLetteredError": DeadLetteredError,
}


def run_error(view: dict[str, Any]) -> BaseException | None:
    """The exception a failed or cancelled run's view (``GET /runs/{id}``) stands for."""
    status, err, rid = view.get("status"), view.get("error") or {}, view.get("run_id")
    if status == "cancelled":
        return WorkflowCancelledError(err.get("message", f"run {rid} was cancelled"), run_id=rid)
    if status != "failed":
        return None
    if err.get("type") == "StepFailedError":
        return StepFailedError(
            step=err.get("step", "?"),
            error_type=err.get("error_type", "?"),
            error_message=err.get("message", ""),
            traceback=err.get("traceback", ""),
            run_id=rid,
            seq=err.get("trigger"),
        )
    cls = _RUN_ERRORS.get(err.get("type"), WorkflowRuntimeError)
    step = (err.get("dead_letter") or {}).get("step")
    return cls(err.get("message", f"run {rid} failed"), run_id=rid, step=step)


def run_result(view: dict[str, Any]) -> Any:
    """A completed run's result: a plain StopEvent's ``result``, or the StopEvent subclass
    (typed when its class is importable here, else its fields).

    Raises:
        the run's error (``StepFailedError``, ``WorkflowTimeoutError``, ...) if it failed.
    """
    error = run_error(view)
    if error is not None:
        raise error
    if view.get("status") != "completed":
        raise WorkflowRuntimeError(f"run {view.get('run_id')} has not ended ({view.get('status')})")
    stop = view.get("stop_event") or {}
    if stop.get("type", "StopEvent") == "StopEvent":
        return view.get("result")
    return _typed(stop["type"], stop.get("data", {}))


def _auth_headers(token: str | None) -> dict[str, str]:
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    return {"Authorization": f"Bearer {token}"} if token else {}


def warn_no_worker(workflow: str, run_id: str, *, stacklevel: int = 2) -> None:
    """Warn (``NoLiveWorkerWarning``) that no live worker serves ``workflow``, so run ``run_id``
    waits in JetStream until one starts."""
    warnings.warn(NoLiveWorkerWarning(workflow, run_id), stacklevel=stacklevel)


class Client:
    """Async client of the control plane.

    Args:
        base_url: the control plane (default ``http://127.0.0.1:8000``).
        token: the API token sent as ``Authorization: Bearer`` on every request, streams included
            (default: the environment variable ``JETLOOM_API_TOKEN``; none when it is unset).
        timeout: seconds per HTTP request (default 30; streams wait without limit).
        http: an ``httpx.AsyncClient`` to use instead of a new one (its base URL is kept).
        unavailable_for_s: how long reads (GET) and stream connections retry, with backoff,
            while the control plane answers 503 (NATS unavailable; default 30 s, 0 = not at
            all). Other requests are not retried: they may have taken effect.

    Methods raise ``ApiError`` for error answers: 401 (no or a wrong token) and 403 (the token
    lacks the endpoint's scope) included.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
        unavailable_for_s: float = UNAVAILABLE_FOR,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.unavailable_for_s = unavailable_for_s
        self._http = http or httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self._owns = http is None
        self._classes: set[str] = set()
        self._auth = _auth_headers(token)  # per request, so a borrowed ``http`` is not changed

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns:
            await self._http.aclose()

    def _retrying(self, *, also: type[BaseException] | None = None, for_s: float | None = None) -> AsyncRetrying:
        """Retries of a 503 (and of ``also``) with full-jitter backoff, for ``for_s`` seconds
        (default ``unavailable_for_s``)."""
        return AsyncRetrying(
            retry=retry_if_exception(_unavailable) | retry_if_exception_type(also or ()),
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            stop=stop_after_delay(self.unavailable_for_s if for_s is None else for_s),
            reraise=True,
        )

    async def _request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        async for attempt in self._retrying(for_s=None if method == "GET" else 0):
            with attempt:
                resp = await self._http.request(method, path, headers={**self._auth, **(headers or {})}, **kwargs)
                if resp.status_code >= 400:
                    raise _error(resp, path)
        return resp

    async def _call(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """The answer's JSON (as builtins)."""
        return (await self._request(method, path, headers=headers, **kwargs)).json()

    async def _answer(self, answer: type[T], method: str, path: str, **kwargs: Any) -> T:
        """The answer decoded as ``answer`` (a Struct of ``services.api_models``)."""
        return msgspec.json.decode((await self._request(method, path, **kwargs)).content, type=answer)

    # ---- workflows and services ----------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """Liveness: ``status`` (``ok``, or ``degraded`` while the control plane has no NATS
        connection), ``nats`` and the control plane's ``version``."""
        return await self._call("GET", "/health")

    async def services(self) -> list[dict[str, Any]]:
        """Live worker processes (registry entries)."""
        return await self._call("GET", "/services")

    async def workflows(self) -> list[dict[str, Any]]:
        """The workflow catalog, with live instance counts."""
        return await self._call("GET", "/workflows")

    async def workflow(self, name: str) -> dict[str, Any]:
        """One workflow's description (steps, events' JSON schemas, graph)."""
        return await self._call("GET", f"/workflows/{name}")

    # ---- runs ----------------------------------------------------------------------------------

    async def start(
        self,
        workflow: str | type[Workflow],
        *,
        run_id: str | None = None,
        start_event: Event | None = None,
        run_timeout: float | timedelta | None = None,
        **fields: Any,
    ) -> RunHandle:
        """Start a run; returns at once with its handle. When no live worker serves the workflow
        (the answer says ``queued``) it warns (``NoLiveWorkerWarning``): the run waits in
        JetStream until a worker serving it starts.

        Args:
            workflow: its name, or the class (its events then come back typed).
            run_id: makes the start idempotent (default: a new id).
            start_event / **fields: the start event, or its fields.
            run_timeout: seconds (or a timedelta) after which the run fails with
                ``WorkflowTimeoutError`` unless it has ended (a durable JetStream schedule;
                default: none).

        Raises:
            ApiError: 404 unknown workflow, 422 fields not matching the start event's schema.
        """
        name = _workflow_name(workflow)
        body = event_fields(start_event) if start_event is not None else fields
        params: dict[str, Any] = {"run_id": run_id} if run_id else {}
        if run_timeout is not None:
            secs = run_timeout.total_seconds() if isinstance(run_timeout, timedelta) else run_timeout
            params["run_timeout"] = secs
        data = await self._answer(StartAnswer, "POST", f"/workflows/{name}/runs", json=body, params=params or None)
        if data.queued:
            warn_no_worker(name, data.run_id, stacklevel=3)
        handle = RunHandle(self, data.run_id, name, queued=data.queued)
        handle._checked_workers = True  # (the answer said whether a live worker serves it)
        return handle

    async def run(
        self, workflow: str | type[Workflow], *, run_id: str | None = None, **fields: Any
    ) -> Any:
        """Start a run and wait for its result (see ``RunHandle.result``)."""
        handle = await self.start(workflow, run_id=run_id, **fields)
        return await handle.result()

    def handle(self, run_id: str, workflow: str | None = None) -> RunHandle:
        """A handle on an existing run."""
        return RunHandle(self, run_id, workflow)

    async def runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: int = 0,
        order: str = "newest",
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of runs and the cursor of the next page (``None`` at the end).

        Args:
            workflow / status: filters (``status``: ``running``, ``waiting``, ``completed``,
                ``failed`` or ``cancelled``).
            limit: runs per page (1 to 1,000; default 50).
            cursor: the previous page's cursor (0: the first page).
            order: ``"newest"`` (default) or ``"oldest"`` first.
        """
        params: dict[str, Any] = {"limit": limit, "cursor": cursor, "order": order}
        if workflow:
            params["workflow"] = workflow
        if status:
            params["status"] = status
        data = await self._call("GET", "/runs", params=params)
        return data["runs"], data["next_cursor"]

    async def iter_runs(
        self, *, workflow: str | None = None, status: str | None = None, page: int = 100, order: str = "newest"
    ) -> AsyncIterator[dict[str, Any]]:
        """Every run matching the filters, newest first (``order="oldest"``: oldest first),
        fetched a page at a time."""
        cursor: int | None = 0
        while cursor is not None:
            found, cursor = await self.runs(workflow=workflow, status=status, limit=page, cursor=cursor, order=order)
            for r in found:
                yield r


    # ---- sessions ------------------------------------------------------------------------------

    async def create_session(self, workflow: str | type[Workflow], *, session_id: str | None = None) -> SessionHandle:
        """A new session of ``workflow``: runs started in it carry their state from one to the next.

        Raises:
            ApiError: 404 unknown workflow, 409 ``session_id`` taken.
        """
        body: dict[str, Any] = {"workflow": _workflow_name(workflow)}
        if session_id is not None:
            body["id"] = session_id
        data = await self._answer(SessionView, "POST", "/sessions", json=body)
        return SessionHandle(self, data.id, data.workflow)

    async def sessions(self) -> list[dict[str, Any]]:
        """Every session (``id``, ``workflow``, ``runs``, ``created_at``), oldest first."""
        return await self._call("GET", "/sessions")

    async def session(self, session_id: str) -> SessionHandle:
        """A handle on an existing session.

        Raises:
            ApiError: 404 no such session.
        """
        data = await self._answer(SessionView, "GET", f"/sessions/{session_id}")
        return SessionHandle(self, data.id, data.workflow)


class SessionHandle:
    """A session (``Client.create_session``/``session``): runs of one workflow, each starting with
    the state the previous one ended with."""

    def __init__(self, client: Client, session_id: str, workflow: str) -> None:
        self.client = client
        self.id = session_id
        self.workflow = workflow

    def __repr__(self) -> str:
        return f"SessionHandle(id={self.id!r}, workflow={self.workflow!r})"

    async def info(self) -> dict[str, Any]:
        """``id``, ``workflow``, ``runs`` (oldest first), ``runs_status``, ``created_at``."""
        return await self.client._call("GET", f"/sessions/{self.id}")

    async def start(self, *, start_event: Event | None = None, **fields: Any) -> RunHandle:
        """Start the session's next run.

        Raises:
            ApiError: 409 while the previous run is still running, 404 session deleted, 422 fields.
        """
        body = event_fields(start_event) if start_event is not None else fields
        data = await self.client._answer(SessionRunAnswer, "POST", f"/sessions/{self.id}/runs", json=body)
        return RunHandle(self.client, data.run_id, self.workflow)

    async def run(self, *, start_event: Event | None = None, **fields: Any) -> Any:
        """Start the session's next run and wait for its result (see ``RunHandle.result``)."""
        return await (await self.start(start_event=start_event, **fields)).result()

    async def delete(self) -> None:
        """Forget the session (its runs stay in the log)."""
        await self.client._call("DELETE", f"/sessions/{self.id}")


class RunHandle:
    """A run started through (or looked up with) a ``Client``."""

    def __init__(
        self, client: Client, run_id: str, workflow: str | None = None, *, queued: bool = False
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.workflow = workflow
        self.queued = queued
        self._checked_workers = False  # whether result() need not ask if a live worker serves it

    def __repr__(self) -> str:
        return f"RunHandle(run_id={self.run_id!r}, workflow={self.workflow!r})"

    async def status(self) -> dict[str, Any]:
        """The run's view: ``status``, ``result``/``error``, timestamps, ``state``, counters."""
        return await self.client._call("GET", f"/runs/{self.run_id}")

    async def events(self, *, after: int = 0) -> list[dict[str, Any]]:
        """Every record of the run after sequence ``after`` (see ``GET /runs/{id}/events``)."""
        data = await self.client._call("GET", f"/runs/{self.run_id}/events", params={"after": after})
        return data["records"]

    async def records(self, *, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every record of the run as it is committed, until the record that ends the run.

        Resumes after a dropped connection (or a 503) from the last sequence seen
        (``Last-Event-ID``), retrying with exponential backoff and jitter for up to 60 s.

        Raises:
            RunNotFound: no such run.
            httpx.TransportError: the control plane stayed unreachable.
        """
        last = after
        http = self.client._http
        while True:
            resp: httpx.Response | None = None
            async for attempt in self.client._retrying(also=httpx.TransportError, for_s=RECONNECT_FOR):
                with attempt:
                    headers = {**self.client._auth, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
                    if last:
                        headers["Last-Event-ID"] = str(last)
                    req = http.build_request(
                        "GET", f"/runs/{self.run_id}/stream", headers=headers, timeout=httpx.Timeout(None, connect=10.0)
                    )
                    resp = await http.send(req, stream=True)
                    if resp.status_code == 503 and self.client.unavailable_for_s > 0:
                        await resp.aread()
                        await resp.aclose()
                        raise _error(resp, req.url.path)
            assert resp is not None
            try:
                if resp.status_code >= 400:
                    await resp.aread()
                    body = resp.json() if resp.content else {}
                    cls = RunNotFound if resp.status_code == 404 else ApiError
                    raise cls(resp.status_code, body.get("error", resp.reason_phrase), body)
                async for sse in EventSource(resp).aiter_sse():
                    if not sse.data:
                        continue
                    record = orjson.loads(sse.data)
                    last = record["seq"]
                    yield record
                    if _ends_run(record):
                        return
                # the server closed the stream without the ending record (e.g. it shut down, or
                # ``last`` was already past the end): stop if the run is over, else reconnect
                if await self._ended_after(last):
                    return
                await anyio.sleep(0.1)
            except (httpx.TransportError, httpx.StreamError):
                continue  # dropped mid-stream: reconnect from ``last``
            finally:
                await resp.aclose()

    async def _ended_after(self, last: int) -> bool:
        """Whether the run's ending record is at or before ``last`` (nothing more will come)."""
        view = await self.status()
        return view["status"] not in ("running", "waiting") and view["last_seq"] <= last

    async def stream(self) -> AsyncIterator[Event | dict[str, Any]]:
        """What the run's steps wrote with ``ctx.write_event_to_stream``, as it is committed
        (typed when the event's class is importable here, plain dicts otherwise), then the
        StopEvent, as ``WorkflowHandler.stream_events`` does in process.

        Raises:
            the run's error (``StepFailedError``, ``WorkflowCancelledError``, ...) at the end if it
            did not complete.
        """
        async for record in self.records():
            if record["kind"] == "out":
                yield _typed(record["type"], record["data"], record.get("class"))
        view = await self.status()
        error = run_error(view)
        if error is not None:
            raise error
        stop = view.get("stop_event")
        if stop is not None:
            typed = _typed(stop["type"], stop.get("data", {}))
            yield typed if isinstance(typed, Event) else StopEvent(result=view.get("result"))

    async def result(self, *, timeout: float | None = None) -> Any:
        """Wait for the run to end and return its result (a plain StopEvent's ``result``, or the
        StopEvent subclass).

        A run that has not ended and whose workflow no live worker serves (checked once per
        handle, unless its start already said so) gets a ``NoLiveWorkerWarning`` first: it waits
        in JetStream until a worker serving the workflow starts.

        Args:
            timeout: seconds to wait at most (default: until the run ends).

        Raises:
            TimeoutError: the run had not ended after ``timeout`` seconds (it keeps running).
            StepFailedError / WorkflowTimeoutError / WorkflowCancelledError: how the run ended.
        """
        with anyio.move_on_after(timeout):
            if not self._checked_workers:
                self._checked_workers = True
                await self._warn_if_unserved()
            last = 0
            while True:
                async for record in self.records(after=last):
                    last = record["seq"]
                view = await self.status()
                if view["status"] not in ("running", "waiting"):
                    return run_result(view)
                # The record that ended the stream was followed by a retry or a rollback that
                # reopened the run: follow on from there to its next end.
                last = max(last, view.get("last_seq") or 0)
                await anyio.sleep(RESULT_POLL_S)
        raise TimeoutError(f"run {self.run_id} has not ended after {timeout} s; it keeps running")

    async def _warn_if_unserved(self) -> None:
        view = await self.status()
        if view["status"] not in ("running", "waiting"):
            return
        workflow = await self.client.workflow(view["workflow"])
        if not workflow.get("instances"):
            warn_no_worker(view["workflow"], self.run_id, stacklevel=4)

    async def send_event(
        self,
        event: Event | None = None,
        *,
        type: str | None = None,  # noqa: A002 - the JSON field's name
        data: dict[str, Any] | None = None,
        step: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Deliver an event to the run (an ``Event``, or its ``type`` name and ``data``),
        optionally to one ``step``. With ``idempotency_key``, a retried call appends once.

        Raises:
            ApiError: 422 when no step accepts the type or the fields do not match, 409 when the
                run has ended.
        """
        if event is not None:
            type, data = event_name(event.__class__), event_fields(event)
        if type is None:
            raise TypeError("send_event needs an event or a type name")
        body: dict[str, Any] = {"type": type, "data": data or {}}
        if step is not None:
            body["step"] = step
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.client._call(
            "POST", f"/runs/{self.run_id}/events", json=body, headers=headers
        )

    async def cancel(self, reason: str = "") -> dict[str, Any]:
        """Cancel the run (409 ``ApiError`` if it has already ended)."""
        return await self.client._call(
            "POST", f"/runs/{self.run_id}/cancel", json={"reason": reason}
        )

    async def state(self, *, at: int | None = None) -> dict[str, Any]:
        """The run folded up to stream sequence ``at`` (default: all of it): the ``status()``
        view plus ``done``/``pending`` (``[[trigger, step]]``), ``epoch``, ``rolled_back``.

        Raises:
            ApiError: 422 when ``at`` is before the run's first record.
        """
        params = {"at": at} if at is not None else None
        return await self.client._call("GET", f"/runs/{self.run_id}/state", params=params)

    async def rollback(self, to_seq: int, *, reason: str = "") -> dict[str, Any]:
        """Roll the run back to stream sequence ``to_seq`` (see ``engine.runtime.timetravel``); returns
        ``{"marker_seq", "epoch", "resumed": [{"trigger", "step"}], ...}``.

        Raises:
            ApiError: 422 when ``to_seq`` is not a usable sequence of the run, 409 when there is
                nothing to undo.
        """
        return await self.client._call(
            "POST", f"/runs/{self.run_id}/rollback", json={"to_seq": to_seq, "reason": reason}
        )

    async def fork(self, at_seq: int, *, run_id: str | None = None) -> RunHandle:
        """A new run continuing from this one's log up to ``at_seq`` (named ``run_id``, default
        a new id); this run is not touched.

        Raises:
            ApiError: 422 for an unusable ``at_seq``, 409 when ``run_id`` exists.
        """
        body: dict[str, Any] = {"at_seq": at_seq}
        if run_id is not None:
            body["run_id"] = run_id
        data = await self.client._answer(ForkAnswer, "POST", f"/runs/{self.run_id}/fork", json=body)
        return RunHandle(self.client, data.run_id, data.workflow)

    async def retry(self) -> dict[str, Any]:
        """Retry the failed run from its failed step (``POST /runs/{id}/retry``); returns
        ``{"run_id", "status": "running", "step", "trigger", "attempt", "duplicate"}``.

        Raises:
            ApiError: 409 if the run is not failed (or failed other than in a step), 404 unknown run.
        """
        return await self.client._call("POST", f"/runs/{self.run_id}/retry")


# ---- the blocking twins ---------------------------------------------------------------------------
#
# SyncClient, SyncRunHandle and SyncSessionHandle declare each method of Client, RunHandle and
# SessionHandle with the same parameters (typed, for users and type checkers) and forward it to
# the async twin on the portal's event loop; handles come back as their blocking twins.
# tests/unit/test_sdk_twins.py fails when one side gains, loses or changes a method or parameter,
# or a forward drops an argument.

F = TypeVar("F", bound=Callable[..., Any])


class _Portal:
    """An event loop in a background thread (an anyio blocking portal), shared by a
    ``SyncClient`` and the handles it hands out."""

    def __init__(self) -> None:
        self._cm: contextlib.AbstractContextManager[anyio.from_thread.BlockingPortal] | None = (
            anyio.from_thread.start_blocking_portal()
        )
        self.portal = self._cm.__enter__()

    @property
    def running(self) -> bool:
        return self._cm is not None

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` on the loop, blocking until it returns."""
        return self.portal.call(functools.partial(fn, *args, **kwargs))

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """``agen`` as a blocking iterator; closing it (or leaving a ``for``) closes ``agen``."""
        try:
            while True:
                try:
                    yield self.portal.call(agen.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)  # (an async generator's; any async iterator is taken)
            if aclose is not None:
                self.portal.call(aclose)

    def run_handle(self, handle: RunHandle) -> SyncRunHandle:
        return SyncRunHandle(self, handle)

    def close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = None


def _twin_of(async_fn: Callable[..., Any]) -> Callable[[F], F]:
    """Mark the decorated method as the blocking twin of ``async_fn`` (for the twin test) and give
    it ``async_fn``'s docstring."""

    def mark(method: F) -> F:
        method.__doc__ = async_fn.__doc__
        method.__twin_of__ = async_fn  # type: ignore[attr-defined]  # a marker attribute on the function, read by the twin test
        return method

    return mark


class SyncClient:
    """The blocking twin of ``Client`` (same methods, same arguments), for scripts and notebooks.

    It runs a ``Client`` on an event loop in a background thread (an anyio blocking portal); the
    run and session handles it returns are blocking too (``SyncRunHandle``,
    ``SyncSessionHandle``). Close it (or use ``with``) to stop the thread.

    Args:
        base_url / token / timeout / unavailable_for_s: as ``Client``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        unavailable_for_s: float = UNAVAILABLE_FOR,
    ) -> None:
        self._portal = _Portal()
        self._async: Client = self._portal.call(
            self._make, base_url, token=token, timeout=timeout, unavailable_for_s=unavailable_for_s
        )

    @staticmethod
    async def _make(base_url: str, **options: Any) -> Client:
        return Client(base_url, **options)  # (its HTTP client is made on the portal's loop)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client and stop the background thread (a second call does nothing)."""
        if self._portal.running:
            self._portal.call(self._async.close)
            self._portal.close()

    @property
    def base_url(self) -> str:
        return self._async.base_url

    @_twin_of(Client.health)
    def health(self) -> dict[str, Any]:
        return self._portal.call(self._async.health)

    @_twin_of(Client.services)
    def services(self) -> list[dict[str, Any]]:
        return self._portal.call(self._async.services)

    @_twin_of(Client.workflows)
    def workflows(self) -> list[dict[str, Any]]:
        return self._portal.call(self._async.workflows)

    @_twin_of(Client.workflow)
    def workflow(self, name: str) -> dict[str, Any]:
        return self._portal.call(self._async.workflow, name)

    @_twin_of(Client.start)
    def start(
        self,
        workflow: str | type[Workflow],
        *,
        run_id: str | None = None,
        start_event: Event | None = None,
        run_timeout: float | timedelta | None = None,
        **fields: Any,
    ) -> SyncRunHandle:
        handle = self._portal.call(
            self._async.start,
            workflow,
            run_id=run_id,
            start_event=start_event,
            run_timeout=run_timeout,
            **fields,
        )
        return self._portal.run_handle(handle)

    @_twin_of(Client.run)
    def run(self, workflow: str | type[Workflow], *, run_id: str | None = None, **fields: Any) -> Any:
        return self._portal.call(self._async.run, workflow, run_id=run_id, **fields)

    @_twin_of(Client.handle)
    def handle(self, run_id: str, workflow: str | None = None) -> SyncRunHandle:
        return self._portal.run_handle(self._async.handle(run_id, workflow))

    @_twin_of(Client.runs)
    def runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: int = 0,
        order: str = "newest",
    ) -> tuple[list[dict[str, Any]], int | None]:
        return self._portal.call(
            self._async.runs, workflow=workflow, status=status, limit=limit, cursor=cursor, order=order
        )

    @_twin_of(Client.iter_runs)
    def iter_runs(
        self, *, workflow: str | None = None, status: str | None = None, page: int = 100, order: str = "newest"
    ) -> Iterator[dict[str, Any]]:
        return self._portal.iterate(self._async.iter_runs(workflow=workflow, status=status, page=page, order=order))

    @_twin_of(Client.create_session)
    def create_session(
        self, workflow: str | type[Workflow], *, session_id: str | None = None
    ) -> SyncSessionHandle:
        handle = self._portal.call(self._async.create_session, workflow, session_id=session_id)
        return SyncSessionHandle(self._portal, handle)

    @_twin_of(Client.sessions)
    def sessions(self) -> list[dict[str, Any]]:
        return self._portal.call(self._async.sessions)

    @_twin_of(Client.session)
    def session(self, session_id: str) -> SyncSessionHandle:
        return SyncSessionHandle(self._portal, self._portal.call(self._async.session, session_id))


class SyncSessionHandle:
    """The blocking twin of ``SessionHandle``."""

    def __init__(self, portal: _Portal, handle: SessionHandle) -> None:
        self._portal = portal
        self._async = handle

    def __repr__(self) -> str:
        return f"SyncSessionHandle(id={self.id!r}, workflow={self.workflow!r})"

    @property
    def id(self) -> str:
        return self._async.id

    @property
    def workflow(self) -> str:
        return self._async.workflow

    @_twin_of(SessionHandle.info)
    def info(self) -> dict[str, Any]:
        return self._portal.call(self._async.info)

    @_twin_of(SessionHandle.start)
    def start(self, *, start_event: Event | None = None, **fields: Any) -> SyncRunHandle:
        return self._portal.run_handle(self._portal.call(self._async.start, start_event=start_event, **fields))

    @_twin_of(SessionHandle.run)
    def run(self, *, start_event: Event | None = None, **fields: Any) -> Any:
        return self._portal.call(self._async.run, start_event=start_event, **fields)

    @_twin_of(SessionHandle.delete)
    def delete(self) -> None:
        self._portal.call(self._async.delete)


class SyncRunHandle:
    """The blocking twin of ``RunHandle``."""

    def __init__(self, portal: _Portal, handle: RunHandle) -> None:
        self._portal = portal
        self._async = handle

    def __repr__(self) -> str:
        return f"SyncRunHandle(run_id={self.run_id!r}, workflow={self.workflow!r})"

    @property
    def run_id(self) -> str:
        return self._async.run_id

    @property
    def workflow(self) -> str | None:
        return self._async.workflow

    @property
    def queued(self) -> bool:
        return self._async.queued

    @_twin_of(RunHandle.status)
    def status(self) -> dict[str, Any]:
        return self._portal.call(self._async.status)

    @_twin_of(RunHandle.events)
    def events(self, *, after: int = 0) -> list[dict[str, Any]]:
        return self._portal.call(self._async.events, after=after)

    @_twin_of(RunHandle.records)
    def records(self, *, after: int = 0) -> Iterator[dict[str, Any]]:
        return self._portal.iterate(self._async.records(after=after))

    @_twin_of(RunHandle.stream)
    def stream(self) -> Iterator[Event | dict[str, Any]]:
        return self._portal.iterate(self._async.stream())

    @_twin_of(RunHandle.result)
    def result(self, *, timeout: float | None = None) -> Any:
        return self._portal.call(self._async.result, timeout=timeout)

    @_twin_of(RunHandle.send_event)
    def send_event(
        self,
        event: Event | None = None,
        *,
        type: str | None = None,  # noqa: A002 - the JSON field's name
        data: dict[str, Any] | None = None,
        step: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        return self._portal.call(
            self._async.send_event, event, type=type, data=data, step=step, idempotency_key=idempotency_key
        )

    @_twin_of(RunHandle.cancel)
    def cancel(self, reason: str = "") -> dict[str, Any]:
        return self._portal.call(self._async.cancel, reason)

    @_twin_of(RunHandle.state)
    def state(self, *, at: int | None = None) -> dict[str, Any]:
        return self._portal.call(self._async.state, at=at)

    @_twin_of(RunHandle.rollback)
    def rollback(self, to_seq: int, *, reason: str = "") -> dict[str, Any]:
        return self._portal.call(self._async.rollback, to_seq, reason=reason)

    @_twin_of(RunHandle.fork)
    def fork(self, at_seq: int, *, run_id: str | None = None) -> SyncRunHandle:
        return self._portal.run_handle(self._portal.call(self._async.fork, at_seq, run_id=run_id))

    @_twin_of(RunHandle.retry)
    def retry(self) -> dict[str, Any]:
        return self._portal.call(self._async.retry)
