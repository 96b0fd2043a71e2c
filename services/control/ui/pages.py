"""What every page of the web UI shares: rendering a template with the common context, the
Jinja filters, and errors and missing logins answered as pages rather than JSON.

A page handler returns ``page(request, "name.html", **context)``. Every template extends
``base.html`` (blocks ``title``, ``head``, ``content``, ``scripts``) and gets, besides its own
context: ``open_api`` (no token configured: the banner says so), ``user`` (the name of the
logged-in token, or ``None``) and ``path`` (the request's path, for the nav).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template

from ..auth import ApiAuth, LoginRequired
from ..errors import http_error, unexpected_error

__all__ = [
    "LOGIN_PATH",
    "UI_PATH",
    "add_filters",
    "error_page",
    "is_htmx",
    "login_redirect",
    "page",
    "ui_auth",
]

UI_PATH = "/ui"
LOGIN_PATH = f"{UI_PATH}/login"


def ui_auth(request: Request[Any, Any, Any]) -> ApiAuth | None:
    """The app's API tokens (``None``: the API and the UI are open)."""
    auth: ApiAuth | None = request.app.state.get("auth")
    return auth


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    """Whether htmx made the request (it sends ``HX-Request: true``)."""
    return request.headers.get("hx-request") == "true"


def page(
    request: Request[Any, Any, Any], template: str, *, status_code: int = 200, **context: Any
) -> Template:
    """``template`` rendered with ``context`` and the common context (module docstring)."""
    common = {
        "open_api": ui_auth(request) is None,
        "user": request.scope.get("user"),
        "path": request.url.path,
    }
    return Template(template_name=template, context={**common, **context}, status_code=status_code)


def login_redirect(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    """A page asked for without a valid login: a redirect to the login page that comes back
    here (for an htmx request, a 401 with ``HX-Redirect`` so that the whole page goes there)."""
    query = request.url.query
    target = f"{LOGIN_PATH}?next={quote(request.url.path + (f'?{query}' if query else ''), safe='/')}"
    if is_htmx(request):
        return Response(b"", status_code=401, headers={"HX-Redirect": target})
    return Redirect(target)


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An error of a page as a page: the status and reason the API would answer (404, 503...),
    in ``error.html`` (just the message for an htmx request, swapped where it was asked for)."""
    answer = http_error(request, exc) if isinstance(exc, HTTPException) else unexpected_error(request, exc)
    body = answer.content if isinstance(answer.content, dict) else {}
    reason = str(body.get("error", "error"))
    status = answer.status_code or 500
    if is_htmx(request):
        return Template(
            template_str='<p class="error">{{ reason }}</p>',
            context={"reason": reason},
            status_code=status,
            media_type="text/html",
        )
    return page(request, "error.html", status_code=status, reason=reason, status=status)


# ---- Jinja filters ----------------------------------------------------------------------------


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def when(value: str | None) -> str:
    """An RFC 3339 time as ``2026-12-04 06:40:12`` (UTC), ``""`` for none."""
    dt = _parse_time(value)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if dt is not None else ""


def seconds_text(value: float | None) -> str:
    """A duration in seconds as ``850 ms``, ``12.3 s``, ``4 min 5 s`` or ``2 h 3 min``."""
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def between(start: str | None, end: str | None) -> str:
    """The time from RFC 3339 ``start`` to ``end`` (``seconds_text``), ``""`` unless both are set."""
    a, b = _parse_time(start), _parse_time(end)
    if a is None or b is None:
        return ""
    return seconds_text((b - a).total_seconds())


def add_filters(engine: JinjaTemplateEngine) -> None:
    """The UI's Jinja filters: ``when`` (RFC 3339 -> readable UTC), ``duration`` (seconds),
    ``between`` (``start|between(end)``)."""
    engine.engine.filters.update(when=when, duration=seconds_text, between=between)
