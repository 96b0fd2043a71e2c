"""``NatsClient``: start runs and follow them straight over NATS, with no HTTP in between.

The workers run the steps; this client only appends a run's start commit and follows its log::

    async with await NatsClient.connect("nats://127.0.0.1:4222") as client:
        handler = await client.start(DocIndex, root="/usr/lib/python3.11")
        async for ev in handler.stream_events():
            print(ev)
        result = await handler
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from pydantic import BaseModel

from engine import Context, StartEvent, Workflow, WorkflowHandler
from engine.jetstream.backend import NatsBackend
from engine.jetstream.connection import NatsSettings
from engine.model.errors import NoLiveWorkerWarning
from engine.model.events import Event
from engine.runtime.inprocess import start_run
from engine.runtime.spec import validate_class
from engine.wire.subjects import check_token

__all__ = ["SERVED_FOR", "NatsClient"]

SERVED_FOR = 10.0  # seconds a "a live worker serves it" answer of the registry is reused


class NatsClient:
    """A thin client of the JetStream log.

    Args:
        backend: a connected ``NatsBackend`` (closed by ``close()``).

    Attributes:
        log: the backend's event log.
    """

    def __init__(self, backend: NatsBackend) -> None:
        self.backend = backend
        self.log = backend.log
        self._ensured: set[str] = set()  # workflows whose step consumers are known to exist
        self._served: dict[str, float] = {}  # workflow -> when the registry last listed a live worker

    @classmethod
    async def connect(cls, servers: str | NatsSettings, **log_options: Any) -> NatsClient:
        """Connect to ``servers`` (URLs, comma-separated, or ``NatsSettings`` with credentials
        and start-up attempts; options as for ``JetStreamLog``).

        Raises:
            engine.jetstream.connection.NatsConnectError: every start-up attempt failed, or the server
                refused the credentials (at once); its message is one line naming the URL and
                the cause.
        """
        log_options.setdefault("name", "jetloom-client")
        return cls(await NatsBackend.connect(servers, **log_options))

    async def __aenter__(self) -> NatsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.backend.close()

    async def start(
        self,
        workflow: type[Workflow],
        *,
        start_event: StartEvent | None = None,
        run_id: str | None = None,
        timeout: float | None = None,
        ctx: Context[Any] | None = None,
        state: BaseModel | dict[str, Any] | None = None,
        **fields: Any,
    ) -> WorkflowHandler:
        """Start a run of ``workflow`` on whichever workers serve it; return its handler
        (``handler.ctx`` is the run's context).

        The step consumers are created here too, so a run started before any worker exists waits
        in JetStream until one comes; such a start warns (``NoLiveWorkerWarning``) when the
        registry lists no live worker serving the workflow (a positive answer is reused for
        ``SERVED_FOR`` seconds).

        Args:
            workflow: the workflow class (its module must be importable by the workers).
            start_event / **fields: the start event, or its fields.
            run_id: the run id (default: new); starting the same id twice starts one run.
            timeout: seconds the handler waits before failing the run (default: none).
            ctx: a ``Context`` of ``workflow`` (e.g. ``Context.from_dict(Workflow, d)`` from a
                ``to_dict`` made on another client): it re-attaches to its run if that run is still
                going, else a new run starts with its state (as ``Workflow.run(ctx=...)``).
            state: the new run's initial state: a model of the workflow's state type (or a
                parent of it), or a dict for an untyped state.

        Raises:
            ValueError: ``run_id`` is not 1 to 128 characters of ``A-Z a-z 0-9 _ -``
                (``engine.wire.subjects.check_token``); checked before anything reaches NATS, so the
                server never refuses the subject and the connection stays usable.
            EventValidationError: a field of the start event does not match its annotation.
            ContextSerdeError: ``ctx`` is another workflow's.
            ValueError: ``state`` is not of the workflow's state type.
            WorkflowConfigurationError / WorkflowValidationError: the workflow's step graph is
                invalid (checked here, before anything is appended, as ``Workflow.run()`` checks
                it in-process; the workers would refuse the workflow).
        """
        if run_id is not None:
            check_token(run_id, "run id")
        validate_class(workflow)  # (as Workflow.run() does, before anything is appended)
        if state is not None:
            ctx = ctx if ctx is not None else Context(workflow)
            if isinstance(state, dict):
                for key, value in state.items():
                    await ctx.store.set(key, value)
            else:
                await ctx.store.set_state(state)
        if workflow.workflow_name not in self._ensured:
            for spec in workflow.steps.values():
                await self.log.ensure_consumer(
                    workflow.workflow_name, spec.name, spec.accepts_names, update=False
                )
            self._ensured.add(workflow.workflow_name)
        handler = start_run(
            self.log,
            workflow,
            start_event=start_event,
            run_id=run_id,
            fields=fields,
            timeout=timeout,
            ctx=ctx,
        )
        if not await self.serves(workflow.workflow_name):
            warnings.warn(NoLiveWorkerWarning(workflow.workflow_name, handler.run_id), stacklevel=2)
        return handler

    async def serves(self, workflow: str) -> bool:
        """Whether the registry lists a live worker serving ``workflow`` (a ``True`` is reused
        for ``SERVED_FOR`` seconds)."""
        seen = self._served.get(workflow)
        if seen is not None and time.monotonic() - seen < SERVED_FOR:
            return True
        registry = await self.backend.registry()
        if any(w.name == workflow for e in await registry.services() for w in e.workflows):
            self._served[workflow] = time.monotonic()
            return True
        return False

    def attach(
        self,
        workflow: type[Workflow] | str,
        run_id: str,
        *,
        timeout: float | None = None,
    ) -> WorkflowHandler:
        """A handler for an existing run (replays its log, then follows it).

        Raises:
            ValueError: the workflow name or ``run_id`` is not a subject token (as ``start``).
        """
        check_token(run_id, "run id")
        if isinstance(workflow, str):
            check_token(workflow, "workflow")
            return WorkflowHandler(
                log=self.log, workflow=workflow, run_id=run_id, events=dict[str, type[Event]](), timeout=timeout
            )
        return WorkflowHandler(
            log=self.log,
            workflow=workflow.workflow_name,
            run_id=run_id,
            events=workflow.events,
            timeout=timeout,
            definition=workflow,
        )
