"""The registry's pages: live worker processes (``/ui/services``) and the workflow catalog
(``/ui/workflows``, ``/ui/workflows/{name}``: steps, events with their JSON schemas, the graph's
edges, and a form that starts a run through the API, ``POST /workflows/{name}/runs``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from litestar import Controller, Request, get
from litestar.response import Template

from engine.ports.registry import ServiceEntry

from .. import validation as v
from ..auth import needs_page
from ..deps import Plane, connected
from ..routes.catalog import workflow_view
from .forms import form_fields
from .pages import UI_PATH, page

__all__ = ["CatalogPages", "heartbeat_age"]


def heartbeat_age(entry: ServiceEntry, now: datetime | None = None) -> float | None:
    """Seconds since the entry's last heartbeat (``None`` when it has none or it is unreadable)."""
    try:
        beat = datetime.fromisoformat(entry.heartbeat_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, ((now or datetime.now(UTC)) - beat).total_seconds())


class CatalogPages(Controller):
    """``/ui/services`` and ``/ui/workflows``."""

    path = UI_PATH
    include_in_schema = False

    @get("/services", opt=needs_page("read"))
    async def services(self, request: Request[Any, Any, Any], plane: Plane) -> Template:
        """Live worker processes, as their last registry heartbeats say."""
        cp = connected(plane)
        assert cp.view is not None
        now = datetime.now(UTC)
        entries = sorted(cp.view.services.values(), key=lambda e: (e.service, e.instance))
        rows = [{"entry": e, "age": heartbeat_age(e, now)} for e in entries]
        return page(request, "services.html", services=rows)

    @get("/workflows", opt=needs_page("read"))
    async def workflows(self, request: Request[Any, Any, Any], plane: Plane) -> Template:
        """Every workflow ever served, and how many processes serve it now."""
        cp = connected(plane)
        view = cp.view
        assert view is not None
        found = [workflow_view(w, view) for w in sorted(view.workflows.values(), key=lambda w: w.name)]
        return page(request, "workflows.html", workflows=found)

    @get("/workflows/{name:str}", opt=needs_page("read"))
    async def workflow(self, request: Request[Any, Any, Any], plane: Plane, name: v.Name) -> Template:
        """One workflow: its steps, events (schemas), edges, and the start form."""
        cp = connected(plane)
        assert cp.view is not None
        info = await cp.workflow(name)
        wf = workflow_view(info, cp.view)
        schemas = {
            event: orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
            for event, schema in sorted(info.events.items())
        }
        return page(
            request,
            "workflow.html",
            wf=wf,
            schemas=schemas,
            start_fields=form_fields(info.events.get(info.start_event)),
            graph=[msgspec.structs.asdict(e) for e in info.graph],
            runs_url=f"{UI_PATH}/?workflow={name}",
        )
