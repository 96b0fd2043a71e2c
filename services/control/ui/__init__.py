"""The control plane's web UI: server-rendered pages (Jinja2 templates through Litestar's
``TemplateConfig``) with htmx for partial and live updates (its SSE extension), every asset
served from this package (``static/``, vendored htmx: ``make ui-vendor`` refreshes it), so the
UI works with no other host reachable. See docs/ui.md.

::

    /                       redirects to /ui/
    /ui/                    runs, newest first; filters, cursor pages, live rows (runs.py)
    /ui/runs/live           Server-Sent Events of new runs and status changes (runs.py)
    /ui/runs/{id}[/...]     a run: timeline, graph, state at a sequence, event log, actions (run.py)
    /ui/services            live worker processes (catalog.py)
    /ui/workflows[/{name}]  the workflow catalog; a start form per workflow (catalog.py)
    /ui/login, /ui/logout   the login cookie (login.py)
    /ui/static/...          CSS, scripts (static/)

Templates extend ``base.html`` (blocks ``title``, ``head``, ``content``, ``scripts``); handlers
render them with ``pages.page``. Pages need the ``read`` scope through the login cookie when
tokens are configured (``services.control.auth``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Router, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from ..auth import PUBLIC, LoginRequired
from .catalog import CatalogPages
from .login import LoginController
from .pages import UI_PATH, add_filters, error_page, login_redirect
from .run import RunPage
from .runs import RunsPages

__all__ = ["PAGES", "STATIC_PATH", "TEMPLATES", "UI_PATH", "UI_ROUTERS", "template_config"]

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC_PATH = f"{UI_PATH}/static"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """The app's template engine: Jinja2 over ``templates/`` (autoescaped), with the UI's
    filters (``pages.add_filters``)."""
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=add_filters)


@get("/", opt=PUBLIC, include_in_schema=False)
async def root() -> Redirect:
    """``/`` goes to the web UI."""
    return Redirect(f"{UI_PATH}/")


# (every kind the app maps to JSON, so that the app's handlers of those kinds do not take over)
_PAGE_ERRORS: dict[Any, Any] = {
    LoginRequired: login_redirect,
    ValidationException: error_page,
    HTTPException: error_page,
    Exception: error_page,
}

PAGES: list[Any] = [LoginController, RunsPages, RunPage, CatalogPages]
"""The controllers of the pages (under ``/ui``), sharing the pages' error handling."""

UI_ROUTERS: list[Router] = [
    Router(path="/", route_handlers=[root], include_in_schema=False),
    Router(
        path="/",
        route_handlers=PAGES,
        exception_handlers=_PAGE_ERRORS,
        include_in_schema=False,
    ),
    create_static_files_router(
        path=STATIC_PATH, directories=[HERE / "static"], name="ui-static", include_in_schema=False
    ),
]
"""The routers ``services.control.asgi.create_app`` registers: ``/``, the pages, the static files."""
