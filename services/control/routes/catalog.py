"""The registry as the API shows it: ``GET /services`` (live worker processes) and the workflow
catalog, ``GET /workflows`` and ``GET /workflows/{name}``."""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from engine.ports.registry import RegistryView, ServiceEntry
from engine.runtime.describe import WorkflowInfo
from services.api_models import ServiceView, WorkflowView

from .. import validation as v
from ..auth import needs
from ..deps import Plane, connected
from ..openapi import operation, responses

__all__ = ["ServicesController", "WorkflowsController", "workflow_view"]


def workflow_view(info: WorkflowInfo, view: RegistryView, live: list[ServiceEntry] | None = None) -> WorkflowView:
    """A catalog entry with how many live processes serve it now, and their services (``live``:
    those processes, default the view's)."""
    if live is None:
        live = view.serving(info.name)
    return WorkflowView(
        **msgspec.structs.asdict(info), instances=len(live), services=sorted({e.service for e in live})
    )


class ServicesController(Controller):
    """Live worker processes (registry entries)."""

    path = "/services"
    tags = ["services"]

    @get(opt=needs("read"), responses=responses(), operation_class=operation())
    async def services(self, plane: Plane) -> list[ServiceView]:
        """Live worker processes, as they last reported in their registry heartbeats."""
        cp = connected(plane)
        view = cp.view
        assert view is not None
        entries = sorted(view.services.values(), key=lambda e: (e.service, e.instance))
        return [ServiceView(**msgspec.structs.asdict(e)) for e in entries]


class WorkflowsController(Controller):
    """The workflow catalog: every workflow ever served."""

    path = "/workflows"
    tags = ["workflows"]

    @get(opt=needs("read"), responses=responses(), operation_class=operation())
    async def workflows(self, plane: Plane) -> list[WorkflowView]:
        """Every workflow ever served, with how many live processes serve it now."""
        cp = connected(plane)
        view = cp.view
        assert view is not None
        return [workflow_view(w, view) for w in sorted(view.workflows.values(), key=lambda w: w.name)]

    @get("/{name:str}", opt=needs("read"), responses=responses(404), operation_class=operation())
    async def workflow_detail(self, plane: Plane, name: v.Name) -> WorkflowView:
        """A workflow's steps, events (JSON schemas), graph and start event."""
        cp = connected(plane)
        assert cp.view is not None
        info = await cp.workflow(name)
        # (the registry's own entries when the view has none yet: the SDK warns on 0 instances)
        return workflow_view(info, cp.view, await cp.serving(name))
