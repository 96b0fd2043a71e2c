"""``GET /health`` (liveness) and ``GET /ready`` (readiness): open to all, for probes."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from engine.ports.backend import Readiness
from services.api_models import Health, NotReady, Ready
from services.registry import jetloom_version

from ..app import READY_TIMEOUT
from ..auth import PUBLIC
from ..deps import Plane
from ..errors import ERROR_RESPONSES, RETRY_AFTER_S
from ..openapi import operation

__all__ = ["HealthController"]


class HealthController(Controller):
    """Liveness and readiness."""

    tags = ["health"]
    opt = PUBLIC
    security = [{}]

    @get("/health", operation_class=operation())
    async def health(self, plane: Plane) -> Health:
        """Liveness: 200 while the process serves HTTP; ``nats`` says whether NATS is connected."""
        ok = plane.backend is not None and plane.backend.is_connected
        return Health(status="ok" if ok else "degraded", nats=ok, version=jetloom_version())

    @get(
        "/ready",
        operation_class=operation(),
        responses={
            HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
                data_container=NotReady, description=ERROR_RESPONSES[503].description, generate_examples=False
            )
        },
    )
    async def ready(self, plane: Plane) -> Response[Ready | NotReady]:
        """Readiness: 200 while NATS is connected and the run stream has a leader (on a server
        that is not clustered, a stream whose info can be read is led by it); 503 with the reason
        and ``Retry-After`` otherwise."""
        backend = plane.backend
        if backend is None:
            readiness = Readiness(ready=False, reason="NATS is not connected")
        else:
            readiness = await backend.ready(READY_TIMEOUT)
        if not readiness.ready:
            body = NotReady(
                error=readiness.reason or "not ready",
                status=HTTP_503_SERVICE_UNAVAILABLE,  # the error body every 503 has
                ready=False,
                nats=backend is not None and backend.is_connected,
                retry_after=RETRY_AFTER_S,
            )
            return Response(
                body, status_code=HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        ready = Ready(status="ready", ready=True, nats=True, stream=readiness.stream or "", leader=readiness.leader)
        return Response(ready, status_code=HTTP_200_OK)
