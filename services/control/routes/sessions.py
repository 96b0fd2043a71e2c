"""Sessions over the API (``services.sessions``)::

    POST   /sessions                  body: {"workflow": NAME, "id": optional}     201
    GET    /sessions                  every session, oldest first
    GET    /sessions/{id}             the session, with each run's status
    POST   /sessions/{id}/runs        body: start event fields; starts the next run     201
    DELETE /sessions/{id}             forgets the session (its runs stay in the log)   200

``POST /sessions/{id}/runs`` answers 409 while the session's previous run is still running: the
state the next run starts with is the state that run ends with, not known until it ends. It
also answers 409 when another request added a run to the session at the same moment.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
)

from engine.ports.sessions import Session, SessionConflictError, SessionNotFoundError
from engine.runtime.inprocess import new_run_id
from services.api_models import (
    CreateSession,
    SessionDeleted,
    SessionDetail,
    SessionRunAnswer,
    SessionView,
)

from .. import validation as v
from ..app import ControlPlane
from ..auth import needs
from ..deps import Plane, connected, json_body
from ..errors import ApiError
from ..openapi import operation, responses
from ..queries import load_run, run_links

__all__ = ["SessionsController"]


async def _get(cp: ControlPlane, session_id: str) -> tuple[Session, int]:
    try:
        return await (await cp.session_store()).get(session_id)
    except SessionNotFoundError as exc:
        raise ApiError(status_code=HTTP_404_NOT_FOUND, detail=str(exc)) from None


def _view(session: Session) -> SessionView:
    return SessionView(**msgspec.structs.asdict(session))


class SessionsController(Controller):
    """Sessions: runs of one workflow, each starting with the state the previous one ended with."""

    path = "/sessions"
    tags = ["sessions"]

    @post(
        status_code=HTTP_201_CREATED,
        opt=needs("admin"),
        responses=responses(404, 409, 413, 422),
        operation_class=operation(CreateSession),
    )
    async def create_session(self, plane: Plane, request: Request[Any, Any, Any]) -> SessionView:
        """Create a session of a workflow. Body: ``{"workflow": NAME, "id": optional id}``."""
        cp = connected(plane)
        body = await json_body(request, required=True)
        if not isinstance(body, dict) or not isinstance(body.get("workflow"), str):
            raise ApiError(
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                detail="'workflow' (a workflow name) is required",
                extra={"field": "workflow"},
            )
        info = await cp.workflow(v.name(body["workflow"], "workflow"))
        sid = body.get("id")
        if sid is not None:
            v.name(sid, "id", "session id")
        try:
            session = await (await cp.session_store()).create(info.name, sid)
        except SessionConflictError as exc:
            raise ApiError(status_code=HTTP_409_CONFLICT, detail=str(exc)) from None
        return _view(session)

    @get(opt=needs("read"), responses=responses(), operation_class=operation())
    async def list_sessions(self, plane: Plane) -> list[SessionView]:
        """Every session, oldest first."""
        cp = connected(plane)
        return [_view(s) for s in await (await cp.session_store()).list()]

    @get("/{session_id:str}", opt=needs("read"), responses=responses(404), operation_class=operation())
    async def session_detail(self, plane: Plane, session_id: v.Name) -> SessionDetail:
        """A session, with the status of each of its runs (``runs_status``, same order as
        ``runs``)."""
        cp = connected(plane)
        assert cp.log is not None
        session, _ = await _get(cp, session_id)
        statuses = []
        for rid in session.runs:
            st, _ = await load_run(cp.log, session.workflow, rid)
            statuses.append(st.status)
        return SessionDetail(**msgspec.structs.asdict(session), runs_status=statuses)

    @post(
        "/{session_id:str}/runs",
        status_code=HTTP_201_CREATED,
        opt=needs("admin"),
        responses=responses(404, 409, 413, 422),
        operation_class=operation(
            dict[str, Any], required=False, description="The start event's fields", location=True
        ),
    )
    async def run_in_session(
        self, plane: Plane, request: Request[Any, Any, Any], session_id: v.Name
    ) -> Response[SessionRunAnswer]:
        """Start the session's next run; the body holds the start event's fields. The run starts
        with the state the previous run ended with. 409 while the previous run is still
        running."""
        cp = connected(plane)
        assert cp.log is not None
        session, revision = await _get(cp, session_id)
        info = await cp.workflow(session.workflow)
        fields = await json_body(request, required=False)
        cp.validate(info, info.start_event, fields)
        initial: dict[str, Any] = {}
        if session.runs:
            prev = session.runs[-1]
            assert cp.runs is not None
            if await cp.runs.find_workflow(prev) is not None:
                st, _ = await load_run(cp.log, session.workflow, prev)
                if not st.terminal:
                    raise ApiError(
                        status_code=HTTP_409_CONFLICT,
                        detail=f"the session's previous run {prev} is still {st.status}; "
                        "start the next one when it has ended",
                        extra={"run_id": prev, "run_status": st.status},
                    )
                initial = st.state
        rid = new_run_id()
        try:
            await (await cp.session_store()).add_run(session, revision, rid)
        except SessionConflictError as exc:
            raise ApiError(status_code=HTTP_409_CONFLICT, detail=str(exc)) from None
        await cp.ensure_consumers(info)
        await cp.append_start(info, rid, fields, initial_state=initial)
        links = run_links(rid)
        body = msgspec.convert(
            {
                "run_id": rid,
                "workflow": info.name,
                "session": session.id,
                "status": "running",
                "initial_state": initial,
                "links": links,
            },
            SessionRunAnswer,
        )
        return Response(body, status_code=HTTP_201_CREATED, headers={"Location": links["self"]})

    @delete(
        "/{session_id:str}",
        status_code=HTTP_200_OK,
        opt=needs("admin"),
        responses=responses(404),
        operation_class=operation(),
    )
    async def delete_session(self, plane: Plane, session_id: v.Name) -> SessionDeleted:
        """Forget a session; its runs stay in the log."""
        cp = connected(plane)
        session, _ = await _get(cp, session_id)
        await (await cp.session_store()).delete(session.id)
        return SessionDeleted(id=session.id, deleted=True)
