"""What every route handler of the control plane shares: the ``ControlPlane`` as Litestar
dependencies, and the request body read as JSON.

Dependencies (registered by ``services.control.asgi.create_app``):

- ``plane``: the process's ``ControlPlane``, whatever the state of its NATS connection
  (``/health``, ``/ready`` report that state);
- ``cp``: the same once NATS is connected; a handler that needs NATS declares ``cp`` and gets
  503 with ``Retry-After`` at once while it is not (rather than after a request's timeout).
"""

from __future__ import annotations

from typing import Any

import nats.errors
import orjson
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_404_NOT_FOUND

from .app import ControlPlane
from .errors import ApiError

__all__ = ["DEPENDENCIES", "Plane", "connected_plane", "json_body", "not_found", "the_plane"]

Plane = NamedDependency[ControlPlane]
"""A handler parameter ``cp: Plane`` (or ``plane: Plane``) gets the dependency of that name."""


def the_plane(state: State) -> ControlPlane:
    """The app's ``ControlPlane`` (``app.state.control_plane``)."""
    plane: ControlPlane = state.control_plane
    return plane


def connected_plane(plane: Plane) -> ControlPlane:
    """``plane``, once NATS is connected.

    Raises:
        nats.errors.ConnectionReconnectingError / ConnectionClosedError: NATS is not connected
            (503 with ``Retry-After``, ``services.control.errors``).
    """
    nc = plane.log.nc if plane.log is not None else None
    if nc is None or nc.is_closed:
        raise nats.errors.ConnectionClosedError
    if not nc.is_connected:
        raise nats.errors.ConnectionReconnectingError
    return plane


DEPENDENCIES = {
    "plane": Provide(the_plane, sync_to_thread=False),
    "cp": Provide(connected_plane, sync_to_thread=False),
}
"""The app's dependencies: ``plane`` and ``cp`` (see the module docstring)."""


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


def not_found(what: str) -> ApiError:
    """A 404 saying ``what`` was not found."""
    return ApiError(status_code=HTTP_404_NOT_FOUND, detail=what)
