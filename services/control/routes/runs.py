"""Runs: start one (``POST /workflows/{name}/runs``), list them (``GET /runs``), read one
(``GET /runs/{id}``), cancel it and retry it after a failure."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, QueryParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
)

from engine.ports.log import AppendResult
from engine.runtime import commands
from engine.runtime.inprocess import new_run_id
from engine.runtime.recovery import (
    RunNotRetryableError,
    retry_run,
    run_timeout_at,
    schedule_run_timeout,
)
from services.api_models import (
    CancelAnswer,
    CancelRequest,
    RetryAnswer,
    RunLine,
    RunLinks,
    RunPage,
    RunView,
    StartAnswer,
    WaitedRun,
)

from .. import validation as v
from ..auth import needs
from ..deps import Plane, connected, json_body
from ..errors import ApiError
from ..openapi import operation, responses
from ..queries import load_run, run_links, run_view

__all__ = ["RunOrder", "RunStatus", "RunsController"]

RunStatus = Literal["running", "waiting", "completed", "failed", "cancelled"]  # engine.ports.runindex.RUN_STATUSES
RunOrder = Literal["newest", "oldest"]

_START_ANSWERS = {
    HTTP_200_OK: "The run had been started by the same ``run_id`` or ``Idempotency-Key``; with "
    "``?wait=true``: the run ended, and the body is its view (``WaitedRun``)",
    HTTP_201_CREATED: "The run started (``Location``: the run)",
    HTTP_202_ACCEPTED: "No live process serves the workflow: the run waits in JetStream "
    "(``reason``); with ``?wait=true``: the run still runs after ``timeout``",
}


class RunsController(Controller):
    """Runs of every workflow."""

    tags = ["runs"]

    @post(
        "/workflows/{name:str}/runs",
        status_code=HTTP_201_CREATED,
        opt=needs("run"),
        responses={
            **responses(404, 413, 422),
            **{
                code: ResponseSpec(data_container=StartAnswer, description=text, generate_examples=False)
                for code, text in _START_ANSWERS.items()
            },
        },
        operation_class=operation(
            dict[str, Any], required=False, description="The start event's fields", location=True
        ),
    )
    async def start_run(
        self,
        plane: Plane,
        request: Request[Any, Any, Any],
        name: v.Name,
        wait: FromQuery[bool] = False,
        timeout: Annotated[float | None, QueryParameter(gt=0, le=86_400)] = None,
        run_id: v.OptionalName = None,
        run_timeout: Annotated[float | None, QueryParameter(gt=0, le=365 * 86_400)] = None,
        idempotency_key: v.StartIdempotencyKey = None,
    ) -> Response[StartAnswer | WaitedRun]:
        """Start a run; the body holds the start event's fields.

        With ``?wait=true`` the response comes when the run ends (or after ``timeout`` seconds,
        with the run still running, status 202). ``run_id`` (or an ``Idempotency-Key`` header)
        makes the start idempotent: the same id starts one run. A workflow no live process serves
        is accepted and queued in JetStream until a worker comes (``"queued": true``, status 202).
        ``run_timeout`` (seconds) fails the run with ``WorkflowTimeoutError`` if it has not ended
        by then: a JetStream message schedule, so it holds while no process runs.
        """
        cp = connected(plane)
        assert cp.log is not None and cp.view is not None
        info = await cp.workflow(name)
        fields = await json_body(request, required=False)
        cp.validate(info, info.start_event, fields)
        rid = run_id or idempotency_key or new_run_id()
        # a run id made here: nobody else can have started the run (commands.append_start)
        fresh = run_id is None and idempotency_key is None and run_timeout is None
        await cp.ensure_consumers(info)
        # (the deadline goes into RunStarted: whoever ends the run then removes the schedule)
        timeout_at = run_timeout_at(run_timeout) if run_timeout is not None else 0

        async def start() -> AppendResult:
            assert cp.log is not None
            res = await cp.append_start(info, rid, fields, timeout_at_ns=timeout_at, new_run=fresh)
            if run_timeout is not None:
                await schedule_run_timeout(cp.log, info.name, rid, run_timeout, at_ns=timeout_at)
            return res

        queued = not await cp.serving(info.name)
        if wait:  # (followed from before the start: the end is folded as the log delivers it)
            async with cp.following(info.name, rid, fresh=fresh) as waiter:
                res = await start()
                st = await waiter.wait(cp.log, timeout or cp.wait_timeout)
            waited = msgspec.convert(
                {**run_view(st), "queued": queued, "created": not res.duplicate, "links": run_links(rid)}, WaitedRun
            )
            return Response(waited, status_code=HTTP_200_OK if st.terminal else HTTP_202_ACCEPTED)
        res = await start()
        links = msgspec.convert(run_links(rid), RunLinks)
        body = StartAnswer(
            run_id=rid,
            workflow=info.name,
            status="queued" if queued else "running",
            queued=queued,
            created=not res.duplicate,
            links=links,
        )
        if queued:
            body.reason = f"no live service serves {info.name!r}; the run waits in JetStream"
        code = HTTP_202_ACCEPTED if queued else (HTTP_201_CREATED if not res.duplicate else HTTP_200_OK)
        return Response(body, status_code=code, headers={"Location": links.self_})

    @get("/runs", opt=needs("read"), responses=responses(), operation_class=operation())
    async def runs(
        self,
        plane: Plane,
        workflow: v.OptionalName = None,
        status: FromQuery[RunStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        cursor: v.Seq = 0,
        order: FromQuery[RunOrder] = "newest",
    ) -> RunPage:
        """Runs newest first (``order=newest``, the default) or in the order they started
        (``order=oldest``); ``next_cursor`` fetches the next page: runs started before it (newest
        first) or after it (oldest first). ``status=waiting``: runs not ended with a step waiting
        for an event (such runs are not ``running``)."""
        cp = connected(plane)
        assert cp.log is not None
        assert cp.runs is not None
        found, nxt = await cp.runs.list_runs(
            workflow=workflow, status=status, limit=limit, cursor=cursor, newest_first=order == "newest"
        )
        return RunPage(runs=[RunLine(**msgspec.structs.asdict(r)) for r in found], next_cursor=nxt)

    @get("/runs/{run_id:str}", opt=needs("read"), responses=responses(404), operation_class=operation())
    async def run_detail(self, plane: Plane, run_id: v.Name) -> RunView:
        """A run's status, result or error, timestamps and state, folded from its log, and what
        it waits for (``waiting_for``: its open ``wait_for_event`` waits; status ``waiting``)."""
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        st, records = await load_run(cp.log, wf, run_id)
        return msgspec.convert(run_view(st, records), RunView)

    @post(
        "/runs/{run_id:str}/cancel",
        status_code=HTTP_202_ACCEPTED,
        opt=needs("admin"),
        responses=responses(404, 409, 413, 422),
        operation_class=operation(CancelRequest, required=False),
    )
    async def cancel_run(self, plane: Plane, request: Request[Any, Any, Any], run_id: v.Name) -> CancelAnswer:
        """Cancel a run: records ``RunCancelled``; no step of the run starts afterwards."""
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        body = await json_body(request, required=False)
        reason = body.get("reason", "") if isinstance(body, dict) else ""
        if not isinstance(reason, str):
            raise ApiError(
                status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail="'reason' must be a string", extra={"field": "reason"}
            )
        st, _ = await load_run(cp.log, wf, run_id)
        if st.terminal:
            raise ApiError(
                status_code=HTTP_409_CONFLICT,
                detail=f"run {run_id} has already ended ({st.status})",
                extra={"run_status": st.status},
            )
        await commands.append_cancel(cp.log, wf, run_id, reason)
        return CancelAnswer(run_id=run_id, status="cancelled")

    @post(
        "/runs/{run_id:str}/retry",
        status_code=HTTP_202_ACCEPTED,
        opt=needs("admin"),
        responses=responses(404, 409),
        operation_class=operation(),
    )
    async def retry_failed_run(self, plane: Plane, run_id: v.Name) -> RetryAnswer:
        """Retry a failed run from the step that failed (e.g. after a code fix and a worker
        restart): appends ``Resume(reason="manual")`` for that step; the run is running again. 409
        if the run is not failed, or failed other than in a step (a run timeout)."""
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        try:
            resume, res = await retry_run(cp.log, wf, run_id)
        except RunNotRetryableError as exc:
            raise ApiError(
                status_code=HTTP_409_CONFLICT, detail=exc.message, extra={"run_status": exc.status}
            ) from None
        return RetryAnswer(
            run_id=run_id,
            status="running",
            step=resume.step,
            trigger=resume.trigger,
            attempt=resume.attempt,
            duplicate=res.duplicate,
        )
