"""A run's records: read them (``GET /runs/{id}/events``), follow them as Server-Sent Events
(``GET /runs/{id}/stream``), and send an event to the run (``POST /runs/{id}/events``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import orjson
from litestar import Controller, Request, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_202_ACCEPTED,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
)

from engine.runtime import commands
from engine.state.orphans import OrphanFilter
from services.api_models import EventAccepted, RecordsPage, RecordView, SendEvent, StreamEvent

from .. import validation as v
from ..app import ControlPlane
from ..auth import needs
from ..deps import Plane, connected, json_body
from ..errors import ApiError
from ..openapi import operation, responses
from ..queries import follow_run, load_run, record_view

__all__ = ["RunEventsController"]


class RunEventsController(Controller):
    """The records of one run, and events sent to it."""

    path = "/runs/{run_id:str}"
    tags = ["runs"]

    @get("/events", opt=needs("read"), responses=responses(404), operation_class=operation())
    async def run_events(self, plane: Plane, run_id: v.Name, after: v.Seq = 0) -> RecordsPage:
        """Every record of the run after sequence ``after``, in order (orphans of a commit that
        did not stand left out: ``engine.wire.commit``)."""
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        orphans = OrphanFilter()
        records = [r for r in await cp.log.read(wf, run_id) if orphans.counts(r) and r.seq > after]
        views = msgspec.convert([record_view(r) for r in records], list[RecordView])
        return RecordsPage(run_id=run_id, workflow=wf, records=views)

    @get(
        "/stream",
        opt=needs("read"),
        responses={
            **responses(404),
            HTTP_200_OK: ResponseSpec(
                data_container=StreamEvent,
                media_type="text/event-stream",
                description="Server-Sent Events, one per record (``StreamEvent``: ``id`` the record's "
                "stream sequence, ``event`` its kind, ``data`` the record as JSON, a ``RecordView``), "
                "and a ``: keep-alive`` comment while the run is idle",
                generate_examples=False,
            ),
        },
        media_type="text/event-stream",
        operation_class=operation(),
    )
    async def run_stream(
        self,
        plane: Plane,
        run_id: v.Name,
        after: v.OptionalSeq = None,
        last_event_id: v.LastEventId = None,
    ) -> ServerSentEvent:
        """The run's records as Server-Sent Events, pushed as they are committed.

        Each event has ``id:`` = stream sequence, ``event:`` = kind (evt/sys/out) and ``data:`` =
        the record as in ``/runs/{id}/events`` (``RecordView``). Reconnect with ``Last-Event-ID``
        (or ``?after=``) to resume without loss or repeats. The stream ends after the record that
        ends the run. Orphans (messages of a commit that did not stand, ``engine.wire.commit``)
        are left out.
        """
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        last = min(max(after or 0, int(last_event_id or 0)), v.SEQ_MAX)
        assert cp.runs is not None
        end = await cp.runs.terminal_seq(wf, run_id)
        return ServerSentEvent(_sse(cp, wf, run_id, last, end))

    @post(
        "/events",
        status_code=HTTP_202_ACCEPTED,
        opt=needs("run"),
        responses=responses(404, 409, 413, 422),
        operation_class=operation(SendEvent),
    )
    async def send_event(
        self,
        plane: Plane,
        request: Request[Any, Any, Any],
        run_id: v.Name,
        idempotency_key: v.EventIdempotencyKey = None,
    ) -> EventAccepted:
        """Deliver an event to a run from outside (e.g. human input).

        Body: ``{"type": "EventName", "data": {...fields}, "step": "optional target step"}``; the
        fields are validated against the workflow's schema of that event. An ``Idempotency-Key``
        header makes a retried request append once.
        """
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        info = await cp.workflow(wf)
        body = await json_body(request, required=True)
        if not isinstance(body, dict):
            raise ApiError(status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail="the body must be a JSON object")
        event_type = body.get("type")
        if not isinstance(event_type, str):
            raise ApiError(
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                detail="'type' (the event's class name) is required",
                extra={"field": "type"},
            )
        v.name(event_type, "type", "event type")
        target = body.get("step")
        if target is not None:
            v.name(target, "step")
        data = body.get("data", {})
        key = idempotency_key
        accepted = info.accepted_events() - {info.start_event}
        if event_type in accepted:
            cp.validate(info, event_type, data)
            assert cp.runs is not None
            ended = await cp.runs.terminal_seq(wf, run_id) is not None
        else:  # not a step's input: maybe what a waiting step awaits (ctx.wait_for_event)
            st, records = await load_run(cp.log, wf, run_id)
            ended = st.terminal
            if key is not None:  # a retried send whose event is in the log already
                msg_id = commands.event_key(run_id, key)
                for r in records:
                    if r.headers.get("Nats-Msg-Id") == msg_id:
                        return EventAccepted(run_id=run_id, type=event_type, seq=r.seq, duplicate=True)
            awaited = {
                w.event_type: w.event_schema
                for _, w in st.open_event_waits()
                if w.event_type is not None  # (an event wait always names its event)
            }
            if event_type not in awaited:
                waiting = f"; waits for: {', '.join(sorted(awaited))}" if awaited else ""
                raise ApiError(
                    status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                    detail=f"{wf} has no step that accepts {event_type!r} and no step of run "
                    f"{run_id} waits for it (accepted: {', '.join(sorted(accepted))}{waiting})",
                    extra={"field": "type"},
                )
            cp.validate_schema(event_type, awaited[event_type], data)
        if target is not None and target not in {s.name for s in info.steps}:
            raise ApiError(
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                detail=f"{wf} has no step {target!r}",
                extra={"field": "step"},
            )
        if ended:
            raise ApiError(status_code=HTTP_409_CONFLICT, detail=f"run {run_id} has already ended")
        res = await commands.append_event(
            cp.log,
            wf,
            run_id,
            event_type,
            commands.event_payload(event_type, data),
            target=target,
            idempotency_key=key,
        )
        return EventAccepted(run_id=run_id, type=event_type, seq=res.last_seq, duplicate=res.duplicate)


async def _sse(
    cp: ControlPlane, workflow: str, run_id: str, after: int, end: int | None
) -> AsyncGenerator[ServerSentEventMessage, None]:
    assert cp.log is not None
    if end is not None and after >= end:
        return
    async for raw in follow_run(cp.log, workflow, run_id, after, cp.sse_ping):
        if raw is None:
            yield ServerSentEventMessage(comment="keep-alive")
            continue
        view = record_view(raw)
        yield ServerSentEventMessage(data=orjson.dumps(view).decode(), event=view["kind"], id=raw.seq)
