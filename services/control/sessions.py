"""Session endpoints of the control plane (``engine.ports.sessions``)::

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
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.status_codes import (
    HTTP_201_CREATED,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
)

from engine.ports.sessions import Session, SessionConflictError, SessionNotFoundError, SessionStore
from engine.runtime import commands
from engine.runtime.inprocess import new_run_id

from . import validation as v
from .app import ApiError, ControlPlane, _cp, _json_body
from .auth import needs
from .errors import ERROR_RESPONSES
from .queries import load_run, run_links

__all__ = ["HANDLERS"]


async def _store(cp: ControlPlane) -> SessionStore:
    assert cp.backend is not None
    return await cp.backend.sessions()


async def _get(cp: ControlPlane, session_id: str) -> tuple[Session, int]:
    try:
        return await (await _store(cp)).get(session_id)
    except SessionNotFoundError as exc:
        raise ApiError(status_code=HTTP_404_NOT_FOUND, detail=str(exc)) from None


@post("/sessions", status_code=HTTP_201_CREATED, opt=needs("admin"), responses=ERROR_RESPONSES)
async def create_session(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Create a session of a workflow. Body: ``{"workflow": NAME, "id": optional id}``."""
    cp = _cp(state)
    body = await _json_body(request, required=True)
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
        session = await (await _store(cp)).create(info.name, sid)
    except SessionConflictError as exc:
        raise ApiError(status_code=HTTP_409_CONFLICT, detail=str(exc)) from None
    return msgspec.to_builtins(session)  # type: ignore[no-any-return]


@get("/sessions", opt=needs("read"), responses=ERROR_RESPONSES)
async def list_sessions(state: State) -> list[dict[str, Any]]:
    """Every session, oldest first."""
    return [msgspec.to_builtins(s) for s in await (await _store(_cp(state))).list()]


@get("/sessions/{session_id:str}", opt=needs("read"), responses=ERROR_RESPONSES)
async def session_detail(state: State, session_id: v.Name) -> dict[str, Any]:
    """A session, with the status of each of its runs (``runs_status``, same order as ``runs``)."""
    cp = _cp(state)
    assert cp.log is not None
    session, _ = await _get(cp, session_id)
    body: dict[str, Any] = msgspec.to_builtins(session)
    statuses = []
    for rid in session.runs:
        st, _ = await load_run(cp.log, session.workflow, rid)
        statuses.append(st.status)
    body["runs_status"] = statuses
    return body


@post("/sessions/{session_id:str}/runs", status_code=HTTP_201_CREATED, opt=needs("admin"), responses=ERROR_RESPONSES)
async def run_in_session(
    state: State, request: Request[Any, Any, Any], session_id: v.Name
) -> Response[dict[str, Any]]:
    """Start the session's next run; the body holds the start event's fields. The run starts with
    the state the previous run ended with. 409 while the previous run is still running."""
    cp = _cp(state)
    assert cp.log is not None
    session, revision = await _get(cp, session_id)
    info = await cp.workflow(session.workflow)
    fields = await _json_body(request, required=False)
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
        await (await _store(cp)).add_run(session, revision, rid)
    except SessionConflictError as exc:
        raise ApiError(status_code=HTTP_409_CONFLICT, detail=str(exc)) from None
    await cp.ensure_consumers(info)
    await commands.append_start(
        cp.log,
        info.name,
        rid,
        info.start_event,
        commands.event_payload(info.start_event, fields),
        initial_state=initial,
    )
    links = run_links(rid)
    body = {
        "run_id": rid,
        "workflow": info.name,
        "session": session.id,
        "status": "running",
        "initial_state": initial,
        "links": links,
    }
    return Response(body, status_code=HTTP_201_CREATED, headers={"Location": links["self"]})


@delete("/sessions/{session_id:str}", status_code=200, opt=needs("admin"), responses=ERROR_RESPONSES)
async def delete_session(state: State, session_id: v.Name) -> dict[str, Any]:
    """Forget a session; its runs stay in the log."""
    cp = _cp(state)
    session, _ = await _get(cp, session_id)
    await (await _store(cp)).delete(session.id)
    return {"id": session.id, "deleted": True}


HANDLERS = [create_session, list_sessions, session_detail, run_in_session, delete_session]
