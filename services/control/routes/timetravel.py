"""Time travel over the API (``engine.runtime.timetravel``)::

    GET  /runs/{id}/state?at=N          the run folded up to stream sequence N (default: all of it)
    POST /runs/{id}/rollback            body: {"to_seq": N, "reason": optional}
    POST /runs/{id}/fork                body: {"at_seq": N, "run_id": optional} -> the new run

Errors: 404 unknown run, 422 a sequence that is not a usable point of the run (``field`` names
it), 409 a rollback with nothing to undo or of a fork still being copied, a fork into a run id that
exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
)

from engine.model.errors import InvalidSequenceError, RunConflictError, RunNotFoundError
from engine.runtime import timetravel
from engine.runtime.describe import WorkflowInfo
from engine.runtime.inprocess import new_run_id
from engine.state.fold import RunState
from engine.wire.codec import decode_record
from services.api_models import (
    ForkAnswer,
    ForkRequest,
    Resumed,
    RollbackAnswer,
    RollbackRequest,
    StateView,
)

from .. import validation as v
from ..auth import needs
from ..deps import Plane, connected, json_body
from ..errors import ApiError
from ..openapi import operation, responses
from ..queries import run_links, run_view

__all__ = ["TimeTravelController", "state_view"]


@contextlib.contextmanager
def _errors(field: str) -> Iterator[None]:
    try:
        yield
    except InvalidSequenceError as exc:
        raise ApiError(status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail=exc.message, extra={"field": field}) from None
    except RunConflictError as exc:
        raise ApiError(status_code=HTTP_409_CONFLICT, detail=exc.message) from None
    except RunNotFoundError as exc:
        raise ApiError(status_code=HTTP_404_NOT_FOUND, detail=exc.message) from None


def _accepts(info: WorkflowInfo) -> dict[str, list[str]]:
    return {s.name: s.accepts for s in info.steps}


def _seq_field(body: Any, field: str) -> int:
    value = body.get(field) if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(
            status_code=HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"{field!r} (a stream sequence of the run, >= 1) is required",
            extra={"field": field},
        )
    return value


def state_view(st: RunState, accepts: dict[str, list[str]], at: int | None) -> StateView:
    """``run_view`` plus what time travel needs: ``at``, ``done`` and ``pending`` as
    ``[[trigger seq, step], ...]``, ``waiting``, ``epoch`` and ``rolled_back``
    (``[[to_seq, marker_seq]]``)."""
    view = {
        **run_view(st),
        "at": at,
        "done": sorted([t, s] for t, s in st.done),
        "pending": [[t, s] for t, s in timetravel.pending_triggers(st, accepts)],
        "waiting": [[w.trigger, w.step, w.wait] for _, w in sorted(st.waits.values(), key=lambda v: v[0])],
        "epoch": st.epoch,
        "rolled_back": [list(r) for r in st.rollbacks],
    }
    return msgspec.convert(view, StateView)


class TimeTravelController(Controller):
    """A run as of a past sequence; rolling it back; forking it."""

    path = "/runs/{run_id:str}"
    tags = ["time travel"]

    @get("/state", opt=needs("read"), responses=responses(404, 422), operation_class=operation())
    async def run_state(self, plane: Plane, run_id: v.Name, at: v.OptionalSeq = None) -> StateView:
        """The run's context as of stream sequence ``at`` (every record of the run with ``seq <=
        at`` folded; rollbacks among them applied), or now. 422 when ``at`` is before its first
        record."""
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        info = await cp.workflow(wf)
        raws = await cp.log.read(wf, run_id)
        if at is not None and raws and at < raws[0].seq:
            raise ApiError(
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                detail=f"at={at} is before the run's first record (seq {raws[0].seq})",
                extra={"field": "at"},
            )
        st = RunState(wf, run_id)
        for raw in raws:
            if at is not None and raw.seq > at:
                break
            st.apply(decode_record(raw))
        return state_view(st, _accepts(info), at)

    @post(
        "/rollback",
        status_code=HTTP_200_OK,
        opt=needs("admin"),
        responses=responses(404, 409, 413, 422),
        operation_class=operation(RollbackRequest),
    )
    async def rollback_run(self, plane: Plane, request: Request[Any, Any, Any], run_id: v.Name) -> RollbackAnswer:
        """Roll the run back to ``to_seq``: it continues as if its records after that had not
        happened (they stay readable in ``/events``); triggers pending as of ``to_seq`` run
        again."""
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        info = await cp.workflow(wf)
        body = await json_body(request, required=True)
        to_seq = _seq_field(body, "to_seq")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise ApiError(
                status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail="'reason' must be a string", extra={"field": "reason"}
            )
        await cp.ensure_consumers(info)
        with _errors("to_seq"):
            res = await timetravel.rollback(cp.log, wf, run_id, to_seq, accepts=_accepts(info), reason=reason)
        return RollbackAnswer(
            run_id=run_id,
            to_seq=res.to_seq,
            marker_seq=res.marker_seq,
            epoch=res.epoch,
            resumed=[Resumed(trigger=t, step=s) for t, s in res.pending],
        )

    @post(
        "/fork",
        status_code=HTTP_201_CREATED,
        opt=needs("admin"),
        responses=responses(404, 409, 413, 422),
        operation_class=operation(ForkRequest, location=True),
    )
    async def fork_run(
        self, plane: Plane, request: Request[Any, Any, Any], run_id: v.Name
    ) -> Response[ForkAnswer]:
        """A new run whose log is this run's up to ``at_seq`` (sequences remapped); it continues
        from there. ``run_id`` in the body names it (default: a new id). The original is not
        touched."""
        cp = connected(plane)
        assert cp.log is not None
        wf = await cp.run_workflow(run_id)
        info = await cp.workflow(wf)
        body = await json_body(request, required=True)
        at_seq = _seq_field(body, "at_seq")
        given = body.get("run_id")
        new = v.name(given, "run_id", "run id") if given is not None else new_run_id()
        await cp.ensure_consumers(info)
        with _errors("at_seq"):
            res = await timetravel.fork(cp.log, wf, run_id, at_seq, new)
        links = run_links(new)
        out = msgspec.convert(
            {
                "run_id": new,
                "workflow": wf,
                "forked_from": run_id,
                "at_seq": at_seq,
                "records": res.records,
                "links": links,
            },
            ForkAnswer,
        )
        return Response(out, status_code=HTTP_201_CREATED, headers={"Location": links["self"]})
