"""The run page, ``/ui/runs/{run_id}``: a run's header, the timeline of its step executions
(``services.control.ui.timeline``), its workflow graph, the state at any sequence (time travel),
its event log, and forms that call the JSON API (send the awaited event, cancel, retry, roll back,
fork). Server-rendered with Jinja; htmx swaps the fragments below, and the run's records reach the
page live over ``/ui/runs/{run_id}/live`` (Server-Sent Events, read by htmx's sse extension)::

    GET /ui/runs/{run_id}               the page
    GET /ui/runs/{run_id}/panels        header and timeline (refreshed when records arrive)
    GET /ui/runs/{run_id}/actions       the action forms (refreshed when a wait opens or closes)
    GET /ui/runs/{run_id}/state?at=N    the state folded up to sequence N (the slider's fragment)
    GET /ui/runs/{run_id}/log?before=N  the event log's rows before sequence N ("Show earlier")
    GET /ui/runs/{run_id}/live?after=N  records after N as SSE: ``record`` events (an event log
                                        row as HTML), ``actions`` after a record that changes them,
                                        then ``ended`` after the record that ends the run
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import msgspec
import orjson
from litestar import Controller, Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY

from engine.model.records import RawRecord, RunStarted
from engine.ports.registry import WorkflowInfo
from engine.ports.runindex import rfc3339
from engine.runtime.describe import START_NODE, STOP_NODE
from engine.state.fold import RunState
from engine.state.orphans import OrphanFilter
from engine.wire.codec import decode_record

from .. import validation as v
from ..app import ControlPlane
from ..auth import needs_page
from ..deps import Plane, connected
from ..errors import ApiError
from ..queries import follow_run, load_run, record_view, run_view
from ..routes.timetravel import state_view
from .forms import form_fields
from .pages import UI_PATH, page
from .timeline import Execution, Timeline, build_timeline

__all__ = ["RunPage"]


# ---- formatting helpers the templates use ---------------------------------------------------------


def _ms(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.2f} s"
    return f"{ms / 60_000:.1f} min"


def _offset(t: Timeline, ns: int | None) -> str:
    """``+1.23 s``: time ``ns`` after the run's first record."""
    if ns is None:
        return ""
    return "+" + _ms((ns - t.start_ns) / 1e6)


def _pretty(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _bar(t: Timeline, ex: Execution) -> dict[str, Any]:
    """Where an execution's bar and its parts sit on the timeline, in percent of its span."""
    end = ex.ended_ns if ex.ended_ns is not None else t.end_ns
    left = t.position(ex.queued_ns)
    width = max(0.4, t.position(end) - left)
    ran = None
    if ex.ran_ms is not None and ex.ended_ns is not None:
        start = ex.ended_ns - int(ex.ran_ms * 1e6)
        ran = {"left": t.position(start), "width": max(0.3, t.position(ex.ended_ns) - t.position(start))}
    waits = []
    for w in ex.waits:
        w_end = w.resolved_ns if w.resolved_ns is not None else end
        waits.append(
            {
                "left": t.position(w.since_ns),
                "width": max(0.3, t.position(w_end) - t.position(w.since_ns)),
                "wait": w,
            }
        )
    retry_at = t.position(ex.retry_at_ns) if ex.retry_at_ns else None
    return {"left": left, "width": width, "ran": ran, "waits": waits, "retry_at": retry_at}


MAX_LANES = 8
"""The most lanes a step's row of the timeline gets: more executions at once share lanes."""


def _lanes(t: Timeline) -> list[dict[str, Any]]:
    """Each step's bars, spread over as few lanes as keep them from overlapping (an execution
    takes the first lane free at the time it was queued), at most ``MAX_LANES``."""
    rows = []
    for row in t.rows:
        ends: list[int] = []
        bars = []
        for ex in sorted(row.executions, key=lambda e: (e.queued_ns, e.queued_seq)):
            end = ex.ended_ns if ex.ended_ns is not None else t.end_ns
            lane = next((i for i, last in enumerate(ends) if last < ex.queued_ns), len(ends))
            if lane == len(ends) and lane >= MAX_LANES:  # many at once: overlap the lane free soonest
                lane = min(range(len(ends)), key=ends.__getitem__)
            elif lane == len(ends):
                ends.append(end)
            ends[lane] = max(end, ex.queued_ns + 1)
            bars.append({**_bar(t, ex), "ex": ex, "lane": lane})
        rows.append({"step": row.step, "lanes": max(1, len(ends)), "bars": bars})
    return rows


def _ticks(t: Timeline) -> list[dict[str, Any]]:
    span = t.end_ns - t.start_ns
    return [{"pos": p, "label": "+" + _ms(span * p / 100 / 1e6) if p else "0"} for p in (0, 25, 50, 75, 100)]


# ---- what a page and its fragments show ----------------------------------------------------------


async def _load(cp: ControlPlane, run_id: str) -> tuple[str, RunState, list[RawRecord]]:
    assert cp.log is not None
    wf = await cp.run_workflow(run_id)
    st, raws = await load_run(cp.log, wf, run_id)
    orphans = OrphanFilter()
    return wf, st, [r for r in raws if orphans.counts(r)]


async def _info(cp: ControlPlane, workflow: str) -> WorkflowInfo | None:
    try:
        return await cp.workflow(workflow)
    except ApiError:  # a workflow no worker has described (the catalog does not know it)
        return None


def _links(raws: list[RawRecord], t: Timeline) -> dict[str, Any]:
    """The runs this one is related to: the parent it answers, the run it was forked from, its
    child runs."""
    parent = forked = None
    if raws:
        first = decode_record(raws[0], typed=False).body
        if isinstance(first, RunStarted):
            parent = first.parent
            forked = (first.forked_from, first.forked_at) if first.forked_from else None
    children = [
        (w.child_workflow, w.child_run, ex.step)
        for ex in t.executions
        for w in ex.waits
        if w.kind == "child" and w.child_run
    ]
    return {"parent": parent, "forked": forked, "children": children}


def _awaited(view: dict[str, Any], info: WorkflowInfo | None) -> list[dict[str, Any]]:
    """The run's open event waits (``run_view``'s ``waiting_for``), each with the inputs of the
    event it awaits (``forms.form_fields`` of the schema recorded with the wait, else of the
    catalog's), the fields its ``requirements`` fix filled in, and the form's fixed JSON (the
    event's ``type``)."""
    out = []
    for w in view["waiting_for"]:
        schema = w["event_schema"] or (info.events.get(w["event"], {}) if info is not None else {})
        fields = []
        for f in form_fields(schema):
            if f.name in w["requirements"]:
                value = w["requirements"][f.name]
                shown = value if isinstance(value, str) else orjson.dumps(value).decode()
                f = msgspec.structs.replace(f, default=shown)
            fields.append(f)
        out.append({**w, "fields": fields, "extra": orjson.dumps({"type": w["event"]}).decode()})
    return out


def _graph(info: WorkflowInfo | None, t: Timeline, status: str) -> dict[str, Any] | None:
    """Nodes and edges for the graph (cytoscape's elements), each step node with a class for what
    its executions did: ``failed``, ``waiting``, ``running``, ``ran`` or nothing."""
    if info is None:
        return None
    state: dict[str, str] = {}
    for row in t.rows:
        outcomes = {e.outcome for e in row.executions if not e.rolled_back}
        for cls, hit in (
            ("failed", "failed" in outcomes),
            ("waiting", "suspended" in outcomes),
            ("running", "running" in outcomes),
            ("ran", bool(outcomes & {"completed", "retrying"})),
        ):
            if hit:
                state[row.step] = cls
                break
    nodes = [{"data": {"id": s.name, "label": s.name}, "classes": state.get(s.name, "")} for s in info.steps]
    used = {e.source for e in info.graph} | {e.target for e in info.graph}
    if START_NODE in used:
        nodes.insert(0, {"data": {"id": START_NODE, "label": info.start_event}, "classes": "terminal ran"})
    if STOP_NODE in used:
        done = "terminal ran" if status == "completed" else "terminal"
        nodes.append({"data": {"id": STOP_NODE, "label": " | ".join(info.stop_events) or "stop"}, "classes": done})
    edges = [
        {"data": {"id": f"e{i}", "source": e.source, "target": e.target, "label": e.event}}
        for i, e in enumerate(info.graph)
    ]
    return {"elements": nodes + edges, "steps": state}


LOG_PAGE = 300
"""Records of the event log the page shows at first, the newest; "Show earlier" loads as many
more each time (``/ui/runs/{id}/log?before=N``)."""
TABLE_ROWS = 300
"""Step executions the table under the timeline lists at most, the latest (the bars show all)."""


async def _context(cp: ControlPlane, run_id: str, *, log_rows: bool = False) -> dict[str, Any]:
    """What the page's templates show; ``log_rows``: the event log's rows too (the whole page)."""
    wf, st, raws = await _load(cp, run_id)
    info = await _info(cp, wf)
    t = build_timeline(wf, run_id, raws, now_ns=time.time_ns())
    view = run_view(st, raws)
    status = view["status"]
    return {
        "run_id": run_id,
        "workflow": wf,
        "run": view,
        "status": status,
        "timeline": t,
        "executions": t.executions[-TABLE_ROWS:],
        "execution_count": sum(len(r.executions) for r in t.rows),
        "lanes": _lanes(t),
        "ticks": _ticks(t),
        "links": _links(raws, t),
        "awaited": _awaited(view, info),
        "graph": _graph(info, t, status),
        "first_seq": raws[0].seq if raws else 0,
        "last_seq": raws[-1].seq if raws else 0,
        "record_count": len(raws),
        "records": [_row(r) for r in raws[-LOG_PAGE:]] if log_rows else [],
        "earlier": raws[-LOG_PAGE].seq if log_rows and len(raws) > LOG_PAGE else None,
        "rolled_back": [list(r) for r in st.rollbacks],
        "ms": _ms,
        "offset": lambda ns: _offset(t, ns),
        "rfc3339": rfc3339,
        "pretty": _pretty,
    }


def _row(raw: RawRecord) -> dict[str, Any]:
    view = record_view(raw)
    view["pretty"] = _pretty(view["data"])
    return view


#: Records after which the page's actions change: a wait opens or closes, the run ends or reopens.
_ACTION_SUBJECTS = tuple(
    f".sys.{t}" for t in ("StepSuspended", "RunCompleted", "RunFailed", "RunCancelled", "StepFailed", "RolledBack")
)


def _changes_actions(raw: RawRecord) -> bool:
    return raw.subject.endswith(_ACTION_SUBJECTS) or ".cmd." in raw.subject


async def _live(
    cp: ControlPlane, render: Callable[..., str], workflow: str, run_id: str, after: int
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """The run's records after ``after`` as SSE ``record`` events (event log rows), then one
    ``ended`` event once a record ends the run; keep-alive comments while it is idle."""
    assert cp.log is not None
    async for raw in follow_run(cp.log, workflow, run_id, after, cp.sse_ping):
        if raw is None:
            yield ServerSentEventMessage(comment="keep-alive")
            continue
        html = render(r=_row(raw))
        yield ServerSentEventMessage(data=html, event="record", id=raw.seq)
        if _changes_actions(raw):
            yield ServerSentEventMessage(data=str(raw.seq), event="actions")
    yield ServerSentEventMessage(data="ended", event="ended")


# ---- routes ---------------------------------------------------------------------------------------

PAGE = "run.html"
PANELS = "run_panels.html"
STATE = "run_state.html"
RECORD = "run_record.html"
ACTIONS = "run_actions.html"
LOG = "run_log.html"


class RunPage(Controller):
    """``/ui/runs/{run_id}`` and its fragments and live feed."""

    path = f"{UI_PATH}/runs/{{run_id:str}}"
    include_in_schema = False

    @get("/", opt=needs_page("read"))
    async def run_page(self, request: Request[Any, Any, Any], plane: Plane, run_id: v.Name) -> Template:
        """The run page."""
        return page(request, PAGE, **await _context(connected(plane), run_id, log_rows=True))

    @get("/panels", opt=needs_page("read"))
    async def run_panels(self, request: Request[Any, Any, Any], plane: Plane, run_id: v.Name) -> Template:
        """The header and timeline of the run page, as they are now."""
        return page(request, PANELS, **await _context(connected(plane), run_id))

    @get("/actions", opt=needs_page("read"))
    async def run_actions(self, request: Request[Any, Any, Any], plane: Plane, run_id: v.Name) -> Template:
        """The action forms of the run page, as they are now (the awaited events' forms change
        as waits open and close)."""
        return page(request, ACTIONS, **await _context(connected(plane), run_id))

    @get("/log", opt=needs_page("read"))
    async def run_log(self, request: Request[Any, Any, Any], plane: Plane, run_id: v.Name, before: v.Seq) -> Template:
        """The ``LOG_PAGE`` records of the event log before sequence ``before`` (and a "Show
        earlier" button when there are more)."""
        cp = connected(plane)
        _, st, raws = await _load(cp, run_id)
        older = [r for r in raws if r.seq < before]
        shown = older[-LOG_PAGE:]
        return page(
            request,
            LOG,
            run_id=run_id,
            records=[_row(r) for r in shown],
            earlier=shown[0].seq if len(older) > LOG_PAGE else None,
            rolled_back=[list(r) for r in st.rollbacks],
        )

    @get("/state", opt=needs_page("read"))
    async def run_state(
        self, request: Request[Any, Any, Any], plane: Plane, run_id: v.Name, at: v.OptionalSeq = None
    ) -> Template:
        """The run folded up to sequence ``at`` (``GET /runs/{id}/state``'s view), as HTML; 422
        when ``at`` is before the run's first record."""
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        info = await _info(cp, wf)
        st, raws = await load_run(cp.log, wf, run_id, up_to_seq=at)
        if at is not None and not raws:
            raise ApiError(
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                detail=f"at={at} is before the run's first record",
                extra={"field": "at"},
            )
        accepts = {s.name: s.accepts for s in info.steps} if info is not None else {}
        view = state_view(st, accepts, at)
        return page(
            request, STATE, run_id=run_id, view=view, pretty=_pretty, status=view.status, catalog=info is not None
        )

    @get("/live", opt=needs_page("read"), media_type="text/event-stream")
    async def run_live(
        self, request: Request[Any, Any, Any], plane: Plane, run_id: v.Name, after: v.Seq = 0
    ) -> ServerSentEvent:
        """The run's records after ``after`` as SSE: each a ``record`` event whose data is its
        event log row (HTML), ``actions`` after a record that changes the actions, then
        ``ended`` after the record that ends the run."""
        cp = connected(plane)
        wf = await cp.run_workflow(run_id)
        engine = request.app.template_engine
        assert engine is not None
        row = engine.get_template(RECORD)
        return ServerSentEvent(_live(cp, row.render, wf, run_id, after))
