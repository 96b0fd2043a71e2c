"""``GET /health`` (liveness) and ``GET /ready`` (readiness): open to all, for probes."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from services.api_models import Health, NotReady, Ready
from services.registry import jetloom_version

from ..app import READY_TIMEOUT
from ..auth import PUBLIC
from ..deps import Plane
from ..errors import ERROR_RESPONSES, RETRY_AFTER_S, nats_unavailable
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
        ok = plane.log is not None and plane.log.nc.is_connected
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
        reason: str | None = None
        leader: str | None = None
        if plane.log is None or not plane.log.nc.is_connected:
            reason = "NATS is not connected"
        else:
            try:
                async with asyncio.timeout(READY_TIMEOUT):
                    info = await plane.log.js.stream_info(plane.log.stream)
            except Exception as exc:  # whatever it is, the stream cannot be used now
                reason = nats_unavailable(exc) or f"stream {plane.log.stream}: {type(exc).__name__}: {exc}"
            else:
                cluster = info.cluster
                if cluster is not None and cluster.name is not None and not cluster.leader:
                    reason = f"stream {plane.log.stream} has no leader (cluster {cluster.name})"
                leader = cluster.leader if cluster is not None else None
        if reason is not None:
            body = NotReady(
                error=reason,
                status=HTTP_503_SERVICE_UNAVAILABLE,  # the error body every 503 has
                ready=False,
                nats=plane.log is not None and plane.log.nc.is_connected,
                retry_after=RETRY_AFTER_S,
            )
            return Response(
                body, status_code=HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        assert plane.log is not None
        ready = Ready(status="ready", ready=True, nats=True, stream=plane.log.stream, leader=leader)
        return Response(ready, status_code=HTTP_200_OK)
