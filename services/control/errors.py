"""How the control plane answers errors: every error body is ``{"error": reason, "status": code,
...}``, in one place.

::

    HTTPException (litestar)                 its status; ``extra`` (a dict) merged into the body
    ├── ApiError                             raised by jetloom's handlers
    ├── ValidationException                  400, ``field`` = the parameter and its rule
                                             (services.control.validation.parameter_error)
    ├── NotAuthorizedException               401 + ``WWW-Authenticate: Bearer`` (services.control.auth)
    └── PermissionDeniedException            403
    NATS unavailable (``nats_unavailable``)  503 + ``Retry-After``: no responders, timeouts, a closed or
                                             reconnecting connection, JetStream 503 / stream offline /
                                             no suitable peers / leader election
    larger than the server's max_payload     413 (nats-py ``MaxPayloadError``, the log's ``CommitTooLargeError``)
    anything else                            500 (logged with its traceback); input never gets here
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import (
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from engine.jetstream.retry import LogUnavailableError, is_too_large, unavailable_reason
from services.api_models import ErrorBody

__all__ = [
    "ERROR_RESPONSES",
    "RETRY_AFTER_S",
    "ApiError",
    "ErrorBody",
    "error_body",
    "http_error",
    "nats_unavailable",
    "unexpected_error",
]

logger = logging.getLogger("jetloom.control")

RETRY_AFTER_S = 2  # seconds a client is told to wait after a 503 (a JetStream leader election takes ~2 s)

class ApiError(HTTPException):
    """An error answered as ``{"error": detail, "status": code, **extra}``."""


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


ERROR_RESPONSES: dict[int, ResponseSpec] = {
    400: _spec("A malformed parameter or body (``field`` names it)"),
    401: _spec("No API token, or one that is not valid (with ``WWW-Authenticate: Bearer``)"),
    403: _spec("The API token lacks the scope this endpoint needs"),
    404: _spec("No such workflow, run or session"),
    409: _spec("The run or session is not in a state that allows it"),
    413: _spec("The request body is too large"),
    422: _spec("The body does not match the event's schema (``field`` names it)"),
    503: _spec("NATS or the run stream is unavailable; retry after ``Retry-After`` seconds"),
}
"""The error responses every endpoint declares in the OpenAPI document."""


#: Why an exception means NATS (or the run stream) cannot serve right now, or ``None``: the
#: engine's classification (``engine.jetstream.retry.unavailable_reason``), answered with 503.
nats_unavailable = unavailable_reason


def error_body(exc: HTTPException) -> dict[str, Any]:
    """``{"error": detail, "status": code, **extra}`` (``extra`` merged when it is a dict)."""
    body: dict[str, Any] = {"error": exc.detail, "status": exc.status_code}
    if isinstance(exc.extra, dict):
        body.update(exc.extra)
    return body


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """An ``HTTPException`` as a JSON error body."""
    return Response(error_body(exc), status_code=exc.status_code, headers=getattr(exc, "headers", None))


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Any other exception: 503 with ``Retry-After`` when NATS is unavailable, 413 for a message
    larger than the server takes, else 500 (logged)."""
    if is_too_large(exc):
        body = {
            "error": f"the request makes a message larger than the NATS server's max_payload: {exc}".rstrip(": "),
            "status": HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        }
        return Response(body, status_code=HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    reason = nats_unavailable(exc)
    if reason is not None:
        logger.warning("%s %s: %s", request.method, request.url.path, reason)
        wait = RETRY_AFTER_S
        if isinstance(exc, LogUnavailableError):
            wait = max(1, round(exc.retry_after_s))
        body = {"error": reason, "status": HTTP_503_SERVICE_UNAVAILABLE, "retry_after": wait}
        return Response(
            body,
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(wait)},
        )
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    body = {"error": f"internal error: {type(exc).__name__}: {exc}", "status": 500}
    return Response(body, status_code=HTTP_500_INTERNAL_SERVER_ERROR)
