"""The control plane's process state: ``ControlPlane`` holds its backend (the NATS connection,
rebuilt when nats-py closes it for good; the event log, the run index, the session store) and the
registry view, shared by every request. The HTTP API over it is
``services.control.asgi.create_app``; its routes are in ``services.control.routes``.

Everything it answers comes from the log (runs) and the registry buckets (services, workflows), so
any number of replicas behind a load balancer behave as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.status_codes import (
    HTTP_404_NOT_FOUND,
    HTTP_422_UNPROCESSABLE_ENTITY,
)

from engine.jetstream.backend import NatsBackend
from engine.jetstream.connection import NatsConnectError, NatsSettings, describe_error
from engine.jetstream.retry import LogUnavailableError, retrying
from engine.model.durations import seconds
from engine.model.records import RawRecord
from engine.ports.backend import Backend
from engine.ports.log import AppendResult, EventLog
from engine.ports.registry import RegistryView, ServiceEntry, WorkflowInfo
from engine.ports.runindex import RunIndex
from engine.ports.sessions import SessionStore
from engine.runtime import commands
from engine.state.fold import RunState
from engine.wire.codec import decode_record

from .errors import (
    ApiError,
)

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

__all__ = ["ControlPlane", "RunWaiter"]


logger = logging.getLogger("jetloom.control")

DEFAULT_MAX_BODY = 1 << 20  # bytes; larger request bodies get 413
DEFAULT_WAIT = 30.0  # seconds ?wait=true waits for a run to end by default
#: How long the rebuild of a closed connection keeps trying through transient failures (NATS
#: unreachable, a stream or bucket without a leader) before the process exits for its
#: supervisor: three leader elections of the longest kind (engine.jetstream.retry).
REBUILD_FOR = timedelta(seconds=60)
SSE_PING = 15.0  # seconds between keep-alive comments on an idle stream
NONE_SEEN_FOR = 1.0  # seconds a registry read that found no live process for a workflow is reused
READY_TIMEOUT = 2.0  # seconds /ready waits for the stream's info before it answers 503


class RunWaiter:
    """A run folded from the records its follower is handed (``ControlPlane.following``), and
    a future resolved by the record that ends it: no task, queue or generator per run. Records
    are applied once each, in sequence order; with ``stored``, those handed over before ``wait``
    has read the run's stored records are kept until then.

    Attributes:
        state: the run's fold so far.
    """

    def __init__(self, workflow: str, run_id: str, *, stored: bool) -> None:
        self.state = RunState(workflow, run_id)
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held: list[RawRecord] | None = [] if stored else None
        self._last = 0

    def take(self, raw: RawRecord) -> None:
        """The log's sink: apply ``raw`` (or hold it until the stored records are read)."""
        if self._held is not None:
            self._held.append(raw)
        else:
            self._apply(raw)

    def _apply(self, raw: RawRecord) -> None:
        if raw.seq <= self._last or self.ended.done():
            return
        self._last = raw.seq
        self.state.apply(decode_record(raw))
        if self.state.terminal:
            self.ended.set_result(None)

    async def wait(self, log: EventLog, timeout: float) -> RunState:  # noqa: ASYNC109
        """The run's fold once it ended, or as it stands after ``timeout`` seconds."""
        if self._held is not None:
            try:
                for raw in await log.read(self.state.workflow, self.state.run_id):
                    self._apply(raw)
            finally:
                held, self._held = self._held, None
                for raw in held:
                    self._apply(raw)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(timeout):
                await self.ended
        return self.state


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
        self.view: RegistryView | None = None
        self._validators: dict[tuple[str, bytes], Draft202012Validator] = {}
        self._ensured: set[bytes] = set()
        self._none_seen: dict[str, float] = {}  # workflow -> when the registry had no live process for it
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

    @property
    def log(self) -> EventLog | None:
        """The backend's event log (``None`` before ``start()``)."""
        return self.backend.log if self.backend is not None else None

    @property
    def runs(self) -> RunIndex | None:
        """The backend's run index (``None`` before ``start()``)."""
        return self.backend.runs if self.backend is not None else None

    def _use(self, backend: Backend, view: RegistryView) -> None:
        self.backend, self.view = backend, view

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
            waiting: set[asyncio.Future[Any]] = {stopping, self.broken}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
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

    async def serving(self, workflow: str) -> list[ServiceEntry]:
        """Live processes serving ``workflow``: the registry view's, or, when the view has none,
        the registry's own entries (a worker that registered a moment ago may not have reached the
        view yet, and a start must not call its run queued for that). That read (a watcher over
        the services bucket) is made at most once per ``NONE_SEEN_FOR`` seconds and workflow, so
        a batch of starts queued on purpose before any worker runs does not repeat it per start.

        Raises:
            LogUnavailableError: NATS could not answer the registry read (HTTP 503).
        """
        assert self.view is not None and self.backend is not None
        live = self.view.serving(workflow)
        if live:
            return live
        seen = self._none_seen.get(workflow)
        if seen is not None and time.monotonic() - seen < NONE_SEEN_FOR:
            return []
        registry = await self.backend.registry()
        live = [e for e in await registry.services() if any(w.name == workflow for w in e.workflows)]
        if not live:
            self._none_seen[workflow] = time.monotonic()
        return live

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
            from jsonschema import (
                Draft202012Validator,  # (on the first body checked: not at start-up)
            )

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

    async def append_start(self, info: WorkflowInfo, run_id: str, fields: Any, **options: Any) -> AppendResult:
        """Append the start commit of a run of ``info`` whose start event has ``fields``
        (``engine.runtime.commands.append_start``, which takes ``options``)."""
        assert self.log is not None
        payload = commands.event_payload(info.start_event, fields)
        return await commands.append_start(self.log, info.name, run_id, info.start_event, payload, **options)

    @contextlib.asynccontextmanager
    async def following(self, workflow: str, run_id: str, *, fresh: bool) -> AsyncIterator[RunWaiter]:
        """A ``RunWaiter`` folding the run's records as the log delivers them
        (``EventLog.follow_callback``), from before the caller appends its start: enter it, start
        the run, then ``await waiter.wait(log, timeout)``. ``fresh``: the run id was made for this
        start, so nothing of the run is stored before it; otherwise ``wait`` first reads what is
        stored."""
        assert self.log is not None
        waiter = RunWaiter(workflow, run_id, stored=not fresh)
        unfollow = await self.log.follow_callback(workflow, run_id, waiter.take)
        try:
            yield waiter
        finally:
            unfollow()

    async def session_store(self) -> SessionStore:
        """The backend's session store (opened on first use, and again after a rebuild of the
        connection).

        Raises:
            LogUnavailableError: NATS is not connected yet.
        """
        if self.backend is None:
            raise LogUnavailableError("NATS is not connected yet")
        return await self.backend.sessions()
