"""The control plane's route handlers, one Litestar ``Controller`` per resource::

    health.py       GET /health, GET /ready                                     (open)
    catalog.py      GET /services, GET /workflows, GET /workflows/{name}
    runs.py         POST /workflows/{name}/runs, GET /runs, GET /runs/{id},
                    POST /runs/{id}/cancel, POST /runs/{id}/retry
    events.py       GET|POST /runs/{id}/events, GET /runs/{id}/stream (Server-Sent Events)
    timetravel.py   GET /runs/{id}/state, POST /runs/{id}/rollback, POST /runs/{id}/fork
    sessions.py     POST|GET /sessions, GET|DELETE /sessions/{id}, POST /sessions/{id}/runs

Handlers get the ``ControlPlane`` as the dependency ``plane`` (``services.control.deps``; those
that need NATS check its connection first) and answer the Structs of ``services.api_models``.
"""

from __future__ import annotations

from litestar import Controller

from .catalog import ServicesController, WorkflowsController
from .events import RunEventsController
from .health import HealthController
from .runs import RunsController
from .sessions import SessionsController
from .timetravel import TimeTravelController

__all__ = ["CONTROLLERS"]

CONTROLLERS: list[type[Controller]] = [
    HealthController,
    ServicesController,
    WorkflowsController,
    RunsController,
    RunEventsController,
    TimeTravelController,
    SessionsController,
]
"""Every controller of the API, in the order the OpenAPI document lists them."""
