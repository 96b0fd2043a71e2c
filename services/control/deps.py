"""What every route handler of the control plane shares: the ``ControlPlane`` as Litestar
dependencies, and the request body read as JSON.

The dependency ``plane`` (registered by ``services.control.asgi.create_app``) is the process's
``ControlPlane``, whatever the state of its NATS connection. A handler that needs NATS starts with
``cp = connected(plane)``: 503 with ``Retry-After`` at once while NATS is not connected (rather
than after a request's timeout). That is a call in the handler, not a second dependency, because
Litestar resolves dependencies before it checks the handler's parameters: a malformed parameter
must get its 400 whether NATS is connected or not.
"""

from __future__ import annotations

from typing import Any

import orjson
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.status_codes import HTTP_400_BAD_REQUEST

from engine.jetstream.retry import LogUnavailableError

from .app import ControlPlane
from .errors import ApiError

__all__ = ["DEPENDENCIES", "Plane", "connected", "json_body", "the_plane"]

Plane = NamedDependency[ControlPlane]
"""The type of a handler's ``plane`` parameter: Litestar injects the dependency of that name."""


def the_plane(state: State) -> ControlPlane:
    """The app's ``ControlPlane`` (``app.state.control_plane``)."""
    plane: ControlPlane = state.control_plane
    return plane


def connected(plane: ControlPlane) -> ControlPlane:
    """``plane``, once NATS is connected.

    Raises:
        LogUnavailableError (or what ``Backend.check_connected`` raises): NATS is not connected
            (503 with ``Retry-After``, ``services.control.errors``).
    """
    if plane.backend is None:
        raise LogUnavailableError("NATS is not connected yet")
    plane.backend.check_connected()
    return plane


DEPENDENCIES = {"plane": Provide(the_plane, sync_to_thread=False)}
"""The app's dependencies: ``plane`` (see the module docstring)."""


async def json_body(request: Request[Any, Any, Any], *, required: bool) -> Any:
    """The request body parsed as JSON; ``{}`` for an empty body unless ``required``.

    Raises:
        ApiError: 400 for an empty body that is ``required``, or a body that is not JSON.
    """
    body = await request.body()
    if not body.strip():
        if required:
            raise ApiError(status_code=HTTP_400_BAD_REQUEST, detail="the request body is empty")
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(status_code=HTTP_400_BAD_REQUEST, detail=f"the body is not JSON: {exc}") from None
