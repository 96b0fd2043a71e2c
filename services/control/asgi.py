"""The control plane's HTTP API (Litestar): ``create_app`` builds the ASGI app over one
``ControlPlane`` (serve it with uvicorn). OpenAPI is served at ``/schema`` (Swagger UI at
``/schema/swagger``, ReDoc at ``/schema/redoc``, the document at ``/schema/openapi.json``).

Endpoints (JSON in and out; every error body is ``{"error": <reason>, "status": <code>, ...}``;
bodies are the Structs of ``services.api_models``)::

    GET  /health                        liveness (always 200 while serving); ``nats``: connected or not
    GET  /ready                         200 while NATS is connected and the run stream has a leader, else 503
    GET  /metrics                       Prometheus metrics of this process (scope read, or open: --metrics-open)
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
    POST /runs/{id}/retry               retry a failed run from its failed step (409 if not failed)
    GET  /runs/{id}/state?at=N          the run folded up to sequence N
    POST /runs/{id}/rollback            body: {"to_seq": N}
    POST /runs/{id}/fork                body: {"at_seq": N, "run_id": optional}
    POST /sessions, GET /sessions, GET|DELETE /sessions/{id}, POST /sessions/{id}/runs
    GET  /                              redirects to the web UI, /ui/ (services.control.ui; docs/ui.md)

Every name and id from outside is checked before it reaches NATS (``services.control.validation``);
NATS being unavailable answers 503 with ``Retry-After`` (``services.control.errors``); with API
tokens configured every endpoint but ``/health``, ``/ready`` and ``/schema`` needs a bearer token
with its scope (``services.control.auth``).

With OpenTelemetry tracing on (``engine.runtime.tracing``: a tracer provider set, or the
``OTEL_*`` environment asking for one, and the ``otel`` extra installed), every request gets an HTTP
server span (Litestar's OpenTelemetry plugin over ``opentelemetry-instrumentation-asgi``), and the
span of ``POST /workflows/{name}/runs`` is the parent of the run's start span: the run's trace
begins with the request that started it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components
from litestar.plugins import PluginProtocol

from engine.jetstream.connection import NatsSettings
from engine.runtime import tracing
from services.registry import jetloom_version

from . import validation as v
from .app import DEFAULT_MAX_BODY, DEFAULT_WAIT, SSE_PING, ControlPlane
from .auth import OPEN_WARNING, ApiAuth
from .deps import DEPENDENCIES
from .errors import http_error, unexpected_error
from .openapi import SCHEMA_PATH, docs_assets_router, render_plugins
from .routes import CONTROLLERS
from .routes.metrics import MetricsPlugin
from .ui import UI_ROUTERS, template_config

try:  # (the otel extra: opentelemetry-instrumentation-asgi, which Litestar's plugin wraps)
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
except ImportError:
    OpenTelemetryPlugin = None  # type: ignore[assignment,misc]  # (extra not installed: no HTTP spans)

__all__ = ["create_app"]

logger = logging.getLogger("jetloom.control")


def tracing_plugins() -> list[PluginProtocol]:
    """Litestar's OpenTelemetry plugin when tracing is on and the ``otel`` extra is installed
    (one server span per request, named by method and path; none for the probes ``/health`` and
    ``/ready``, nor for the ASGI ``receive``/``send`` messages, which would make one span per SSE
    record), else nothing."""
    if OpenTelemetryPlugin is None or tracing.tracer() is None:
        return []
    config = OpenTelemetryConfig(exclude=["^/health$", "^/ready$"], exclude_spans=["receive", "send"])
    return [OpenTelemetryPlugin(config)]


def create_app(
    nats_url: str | NatsSettings = "nats://127.0.0.1:4222",
    *,
    prefix: str = "jetloom",
    max_body_size: int = DEFAULT_MAX_BODY,
    wait_timeout: float = DEFAULT_WAIT,
    sse_ping: float = SSE_PING,
    debug: bool = False,
    auth: ApiAuth | None = None,
    metrics_open: bool = False,
) -> Litestar:
    """The control plane's ASGI app (serve it with uvicorn); its ``ControlPlane`` is
    ``app.state.control_plane``, connected by the app's lifespan (or before, by its server).

    Args:
        nats_url: the NATS server URL(s), or ``NatsSettings`` (credentials, replicas).
        prefix: subject and bucket prefix (default ``jetloom``).
        max_body_size: request bodies above this many bytes get 413 (default 1 MiB).
        wait_timeout: default seconds for ``?wait=true`` (default 30).
        sse_ping: seconds between keep-alive comments on idle SSE streams (default 15).
        debug: Litestar's debug mode (tracebacks in error pages; default off).
        auth: the API tokens (``services.control.auth.resolve_auth``); ``None`` (default) leaves
            the API open, and the app logs one warning line saying so at start.
        metrics_open: serve ``GET /metrics`` without a token (default: it needs the ``read``
            scope when ``auth`` is given; ``services.control.routes.metrics``).
    """
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
        # auth: the web UI's pages read it (login, the "open API" banner)
        state=State({"control_plane": cp, "auth": auth}),  # (started before uvicorn by ControlPlaneServer)
        # the process's own logging stays as the command set it up: Litestar's default takes over
        # the root logger with a queue thread, whose lines would come after a command's last one
        logging_config=LoggingConfig(configure_root_logger=False),
        route_handlers=[*CONTROLLERS, docs_assets_router(), *UI_ROUTERS],
        template_config=template_config(),
        dependencies=DEPENDENCIES,
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
            path=SCHEMA_PATH,
            render_plugins=render_plugins(),
            components=auth.components if auth is not None else Components(),
        ),
        debug=debug,
        plugins=[*tracing_plugins(), MetricsPlugin(open_=metrics_open)],
    )
