"""The runs list, ``/ui/``: newest first, filtered by workflow and status, in pages of the run
index (``RunIndex.list_runs(newest_first=True)``: one page of the index, never every run), and
live: ``/ui/runs/live`` pushes new runs and status changes as Server-Sent Events whose
data is the run's table row, swapped in by htmx's SSE extension (a new run goes on top of the
first page; a row listens for the event named ``run-<run id>`` and is replaced by it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromQuery, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from engine.ports.runindex import RUN_STATUSES, RunSummary, rfc3339

from .. import validation as v
from ..app import ControlPlane
from ..auth import needs_page
from ..deps import Plane, connected
from ..errors import ApiError
from ..queries import load_run
from .live import feed_of
from .pages import UI_PATH, page

__all__ = ["PAGE_SIZE", "UI_STATUSES", "RunsPages", "run_summary"]

PAGE_SIZE = 50  # runs per page of the list
UI_STATUSES = tuple(dict.fromkeys([*RUN_STATUSES, "waiting"]))
"""The statuses the list filters by (the run index's, ``waiting`` included)."""
COALESCE_S = 0.1  # seconds the live feed gathers changes before it renders rows
BATCH_MAX = 200  # runs a live stream renders per batch (the others update with their next record)
FRESH_MAX = 10_000  # new runs a live stream remembers (whether their row was sent)


def _choice(value: str | None, field: str) -> str | None:
    """A filter of the form: ``""`` (the form's "all") is no filter."""
    if not value:
        return None
    return v.name(value, field)


async def run_summary(cp: ControlPlane, workflow: str, run_id: str) -> RunSummary | None:
    """One run's line of the list, folded from its records (status ``waiting`` while it is not
    ended and a step waits for an event); ``None`` when it has no ``RunStarted`` (yet)."""
    assert cp.log is not None
    state, records = await load_run(cp.log, workflow, run_id)
    if not records or state.started_ns is None:
        return None
    status = str(state.status)
    if not state.terminal and state.open_event_waits():
        status = "waiting"
    return RunSummary(
        run_id=run_id,
        workflow=workflow,
        status=status,
        started_at=rfc3339(state.started_ns),
        ended_at=rfc3339(state.ended_ns) if state.terminal else None,
        seq=records[0].seq,
    )


class RunsPages(Controller):
    """``/ui/`` and its live feed."""

    path = UI_PATH
    include_in_schema = False

    @get("/", opt=needs_page("read"))
    async def runs(
        self,
        request: Request[Any, Any, Any],
        plane: Plane,
        workflow: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        cursor: v.Seq = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = PAGE_SIZE,
    ) -> Template:
        """The runs, newest first: ``cursor`` 0 is the newest page, else the runs older than that
        stream sequence (the ``Older`` link)."""
        cp = connected(plane)
        assert cp.runs is not None and cp.view is not None
        wf = _choice(workflow, "workflow")
        if status and status not in UI_STATUSES:
            raise ApiError(status_code=400, detail=f"unknown status {status!r}; one of {', '.join(UI_STATUSES)}")
        found, nxt = await cp.runs.list_runs(
            workflow=wf, status=status or None, limit=limit, cursor=cursor, newest_first=True
        )
        live = "&".join(f"{k}={val}" for k, val in (("workflow", wf), ("status", status)) if val)
        return page(
            request,
            "runs.html",
            runs=found,
            next_cursor=nxt,
            cursor=cursor,
            workflow=wf or "",
            status=status or "",
            workflows=sorted(cp.view.workflows),
            statuses=UI_STATUSES,
            live_url=f"{UI_PATH}/runs/live" + (f"?{live}" if live else ""),
            limit=limit,
        )

    @get("/runs/live", opt=needs_page("read"), media_type="text/event-stream")
    async def live(
        self,
        request: Request[Any, Any, Any],
        plane: Plane,
        workflow: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
    ) -> ServerSentEvent:
        """Server-Sent Events: ``run-new`` (a run that started since the stream opened, once the
        filters take it, e.g. when it starts waiting on a ``status=waiting`` page: its row),
        ``run-<run id>`` (that run's row, changed), and a ``: keep-alive`` comment while idle."""
        cp = connected(plane)
        wf = _choice(workflow, "workflow")
        engine = request.app.template_engine
        assert engine is not None
        row = engine.get_template("runs_row.html")
        feed = feed_of(request.app.state, cp)
        return ServerSentEvent(_changes(cp, feed, row, wf, status or None))


async def _changes(
    cp: ControlPlane, feed: Any, row: Any, workflow: str | None, status: str | None
) -> AsyncGenerator[ServerSentEventMessage, None]:
    # the runs whose RunStarted this stream saw (they started after it opened) -> whether their
    # row was sent as new: with a status filter, a new run shows once it has that status
    fresh: dict[str, bool] = {}
    async with feed.listen() as queue:
        yield ServerSentEventMessage(comment="listening")  # (sent at once: the browser knows it is up)
        while True:
            try:
                first = await asyncio.wait_for(queue.get(), cp.sse_ping)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            await asyncio.sleep(COALESCE_S)  # a burst of records of one run: one row
            changes = [first]
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    changes.append(queue.get_nowait())
            runs: dict[str, str] = {}  # run id -> workflow, in the order they changed
            for wf, run_id, kind in changes:
                if workflow is not None and wf != workflow:
                    continue
                runs[run_id] = wf
                if kind == "RunStarted" and run_id not in fresh:
                    fresh[run_id] = False
                    if len(fresh) > FRESH_MAX:
                        del fresh[next(iter(fresh))]
            if len(runs) > BATCH_MAX:  # a flood: new runs first, then the others as they came
                order = sorted(runs, key=lambda r: fresh.get(r) is not False)
                runs = {r: runs[r] for r in order[:BATCH_MAX]}
            for run_id, wf in runs.items():
                summary = await run_summary(cp, wf, run_id)
                if summary is None:
                    continue
                html = row.render(run=summary).strip().replace("\n", " ")
                if fresh.get(run_id) is False:  # new here, not shown yet
                    if status is None or summary.status == status:
                        fresh[run_id] = True
                        yield ServerSentEventMessage(data=html, event="run-new")
                else:
                    yield ServerSentEventMessage(data=html, event=f"run-{run_id}")
