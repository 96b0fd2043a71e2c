"""Rollback, fork and time travel over a run's log (docs/architecture.md).

- **State at N** (``state_at``): the fold of the run's records up to stream sequence ``N``.
- **Rollback to N** (``rollback``): appends ``sys.RolledBack(to_seq=N)``. The fold then skips the
  records after ``N`` up to the marker (they stay in the log, readable), and so does everything a
  step that was running at the time commits later for a trigger in that range. The triggers that
  were pending as of ``N`` (events whose accepting steps had not completed, or had suspended) run
  again: one ``cmd.<step>`` ``Resume(reason="rollback")`` each, appended after the marker. Commits
  after the ``e``-th rollback are keyed ``<run>:<trigger>:<step>@<e>``, so a rerun is not dropped as
  a duplicate of the commit it replaces.
- **Fork at N** (``fork``): a new run whose log is a copy of the records that count up to ``N``
  (rollback markers and what they undid left out), with every stream sequence they refer to
  remapped (``StepCompleted.trigger``/``consumed``, ``Jl-Trigger``, ``Jl-Commit`` keys, ``Resume``
  triggers). Its first record is ``RunStarted`` with ``forked_from``, its last ``sys.RunForked``;
  workers hold the fork's triggers back until that is in the log. The copied events reach the
  step consumers again: those handled in the prefix are skipped as done, pending ones run. The
  original run is not touched.

Sequences are JetStream stream sequences (``RawRecord.seq``), shared by every run of the stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from engine.model.errors import InvalidSequenceError, RunConflictError, RunNotFoundError
from engine.model.events import Event
from engine.model.records import (
    OutMessage,
    RawRecord,
    Record,
    Resume,
    RolledBack,
    RunCompleted,
    RunForked,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepSuspended,
)
from engine.ports.log import EventLog
from engine.runtime.spec import WorkflowDefinition
from engine.runtime.waits import resume_message
from engine.state.fold import RunState, fold
from engine.wire.codec import decode_record, encode
from engine.wire.headers import H_COMMIT, H_NEW_RUN, H_RUN, H_TRIGGER, H_TYPE
from engine.wire.subjects import run_subject

__all__ = [
    "ForkResult",
    "RollbackResult",
    "accepts_of",
    "check_point",
    "fork",
    "pending_triggers",
    "rollback",
    "state_at",
]


class RollbackResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``rollback`` appended.

    Attributes:
        to_seq: the last sequence that still counts.
        marker_seq: sequence of the ``sys.RolledBack`` record.
        epoch: the run's rollback count, this one included.
        pending: ``(trigger seq, step)`` pairs resumed, in trigger order.
    """

    to_seq: int
    marker_seq: int
    epoch: int
    pending: list[tuple[int, str]]


class ForkResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``fork`` created.

    Attributes:
        run_id: the new run.
        from_run: the run copied.
        at_seq: the last sequence of ``from_run`` copied.
        records: records copied (the closing ``RunForked`` not included).
        seq_map: ``{sequence in from_run: sequence in the fork}`` of every copied record.
    """

    run_id: str
    from_run: str
    at_seq: int
    records: int
    seq_map: dict[int, int]


def accepts_of(cls: type[WorkflowDefinition]) -> dict[str, list[str]]:
    """``{step name: names of the events it accepts}`` of a workflow class (what ``rollback``
    needs to know which triggers are pending; the control plane has it from the catalog)."""
    return {name: list(spec.accepts_names) for name, spec in cls.steps.items()}


def state_at(records: Sequence[Record], seq: int) -> RunState:
    """The run as of sequence ``seq``: the fold of its records up to it (rollbacks up to ``seq``
    applied). Pure."""
    return fold(records, until_seq=seq)


def check_point(records: Sequence[Record], seq: int, *, what: str = "sequence") -> RunState:
    """Check that ``seq`` is a point a run can be rolled back or forked to; returns the state as
    of ``seq``.

    Raises:
        InvalidSequenceError: ``seq`` is not the sequence of one of the records, lies in a range
            an earlier rollback undid, comes before the start event, or falls inside a commit
            (some of the commit's messages come after it).
    """
    if not any(r.seq == seq for r in records):
        lo, hi = (records[0].seq, records[-1].seq) if records else (0, 0)
        raise InvalidSequenceError(
            f"{what} {seq} is not a record of the run (its records span {lo}..{hi}; see its events)",
            seq=seq,
        )
    whole = fold(records)
    if whole.excluded(seq):
        raise InvalidSequenceError(f"{what} {seq} was undone by an earlier rollback", seq=seq)
    at = state_at(records, seq)
    if at.status == "pending" or not at.events.get(at.start_event or ""):
        raise InvalidSequenceError(f"{what} {seq} comes before the run's start event", seq=seq)
    if at.incomplete:
        key, pending = next(iter(at.incomplete.items()))
        raise InvalidSequenceError(
            f"{what} {seq} falls inside commit {key} (which began at seq {pending.head_seq}); "
            "pick the sequence of its last message or one before the commit",
            seq=seq,
        )
    return at


def pending_triggers(state: RunState, accepts: Mapping[str, Sequence[str]]) -> list[tuple[int, str]]:
    """``(trigger seq, step)`` of every event in ``state`` whose accepting step (per ``accepts``,
    ``{step: event names}``) has not completed or failed on it; a step that suspended on it counts
    as pending. Empty once the run has ended. Pure."""
    if state.terminal:
        return []
    out: list[tuple[int, str]] = []
    for type_name, seen in state.events.items():
        steps = [s for s, acc in accepts.items() if type_name in acc]
        for seq, target in seen:
            for step in steps:
                if (target is None or target == step) and (seq, step) not in state.done:
                    out.append((seq, step))
    return sorted(out)


async def _records(
    log: EventLog, workflow: str, run_id: str, events: Mapping[str, type[Event]] | None
) -> tuple[list[RawRecord], list[Record]]:
    raws = await log.read(workflow, run_id)
    if not raws:
        raise RunNotFoundError(f"no run {run_id!r} of {workflow}", run_id=run_id)
    return raws, [decode_record(r, events) for r in raws]


async def rollback(
    log: EventLog,
    workflow: str,
    run_id: str,
    to_seq: int,
    *,
    accepts: Mapping[str, Sequence[str]],
    reason: str = "",
    events: Mapping[str, type[Event]] | None = None,
) -> RollbackResult:
    """Roll run ``run_id`` back to sequence ``to_seq``: append ``sys.RolledBack`` and one
    ``Resume(reason="rollback")`` per trigger pending as of ``to_seq``.

    Args:
        accepts: ``{step: accepted event names}`` (``accepts_of(cls)``, or the catalog's steps).
        reason: recorded on the marker.
        events: event classes to decode with (default: plain dicts where unknown).

    Raises:
        RunNotFoundError: the run has no records.
        InvalidSequenceError: see ``check_point``.
        RunConflictError: the run had ended at or before ``to_seq`` or has no record after it
            (nothing to undo), is a fork still being copied, or another rollback got its epoch
            first.
    """
    _, records = await _records(log, workflow, run_id, events)
    at = check_point(records, to_seq, what="to_seq")
    whole = fold(records)
    if whole.forking:
        raise RunConflictError(f"run {run_id} is a fork still being copied", run_id=run_id)
    if at.terminal:
        raise RunConflictError(
            f"run {run_id} had already ended ({at.status}) at seq {to_seq}; nothing after it counts",
            run_id=run_id,
            seq=to_seq,
        )
    if records[-1].seq == to_seq:
        raise RunConflictError(f"seq {to_seq} is the run's last record; nothing to roll back", run_id=run_id, seq=to_seq)
    epoch = whole.epoch + 1
    pending = pending_triggers(at, accepts)
    body = RolledBack(to_seq=to_seq, epoch=epoch, reason=reason, pending=pending)
    marker = OutMessage(
        run_subject(log.prefix, workflow, run_id, "sys", "RolledBack"),
        encode(body),
        {H_RUN: run_id, H_TYPE: "RolledBack"},
    )
    res = await log.append([marker], idempotency_key=f"{run_id}:rollback:{epoch}")
    if res.duplicate:
        raise RunConflictError(f"another rollback of run {run_id} (epoch {epoch}) came first", run_id=run_id)
    resumes = [
        resume_message(log.prefix, workflow, run_id, Resume(step=step, trigger=trigger, reason="rollback"))
        for trigger, step in pending
    ]
    if resumes:
        await log.append(resumes, idempotency_key=f"{run_id}:rollback:{epoch}:resume")
    assert res.last_seq is not None
    return RollbackResult(to_seq=to_seq, marker_seq=res.last_seq, epoch=epoch, pending=pending)


def _counted(records: Sequence[Record], at: RunState, at_seq: int) -> list[Record]:
    """The records a fork copies: those that count as of ``at_seq``, without rollback markers,
    pending timers and payloads that did not decode."""
    out = []
    for r in records:
        if r.seq > at_seq:
            break
        if at.excluded(r.seq) or (r.trigger is not None and at.excluded(r.trigger)):
            continue
        if r.kind == "sch" or r.error is not None or isinstance(r.body, RolledBack):
            continue
        out.append(r)
    return out


def _remap_key(key: str, old: str, new: str, seq_map: Mapping[int, int]) -> str:
    """``<old>:<trigger>:<step>[@e]`` → ``<new>:<mapped trigger>:<step>``; ``<old>:start`` →
    ``<new>:start``."""
    if not key.startswith(old + ":"):
        return key
    head, sep, tail = key[len(old) + 1 :].partition(":")
    if head.isdigit():
        head = str(seq_map.get(int(head), head))
        tail = tail.partition("@")[0]
    return f"{new}:{head}{sep}{tail}"


def _remap_body(body: Any, old: str, new: str, at_seq: int, seq_map: Mapping[int, int]) -> Any:
    def m(seq: int) -> int:
        return seq_map.get(seq, seq)

    if isinstance(body, RunStarted):
        return msgspec.structs.replace(body, run_id=new, forked_from=old, forked_at=at_seq)
    if isinstance(body, StepCompleted):
        return msgspec.structs.replace(body, trigger=m(body.trigger), consumed=[m(s) for s in body.consumed])
    if isinstance(body, StepFailed | StepSuspended | RunCompleted):
        return msgspec.structs.replace(body, trigger=m(body.trigger))
    if isinstance(body, Resume):
        event = body.event
        if event is not None:
            event = msgspec.structs.replace(event, seq=m(event.seq))
        return msgspec.structs.replace(body, trigger=m(body.trigger), event=event)
    return body


async def fork(
    log: EventLog,
    workflow: str,
    run_id: str,
    at_seq: int,
    new_run_id: str,
    *,
    events: Mapping[str, type[Event]] | None = None,
) -> ForkResult:
    """Copy run ``run_id`` up to sequence ``at_seq`` into a new run ``new_run_id`` (see the module
    docstring). Records are appended one at a time (each copy needs the sequences of the ones
    before it), under the ids ``<new_run_id>:fork:<i>``, so a retry within the log's duplicate
    window copies nothing twice.

    Raises:
        RunNotFoundError: ``run_id`` has no records.
        InvalidSequenceError: see ``check_point``.
        RunConflictError: ``new_run_id`` already has records, or ``run_id`` is a fork still
            being copied as of ``at_seq``.
    """
    raws, records = await _records(log, workflow, run_id, events)
    at = check_point(records, at_seq, what="at_seq")
    if at.forking:
        raise RunConflictError(f"run {run_id} is a fork still being copied at seq {at_seq}", run_id=run_id)
    if new_run_id == run_id or await log.read(workflow, new_run_id):
        raise RunConflictError(f"run {new_run_id!r} already exists", run_id=new_run_id)
    by_seq = {r.seq: r for r in raws}
    seq_map: dict[int, int] = {}
    copied = _counted(records, at, at_seq)
    for i, rec in enumerate(copied):
        raw = by_seq[rec.seq]
        # (not ``Jl-New-Run``: it promises a worker that the start commit is all the run has, so
        # the fork's copied start event would start the run over instead of waiting for RunForked)
        headers = {k: v for k, v in raw.headers.items() if k.startswith("Jl-") and k != H_NEW_RUN}
        headers[H_RUN] = new_run_id
        if rec.trigger is not None:
            headers[H_TRIGGER] = str(seq_map.get(rec.trigger, rec.trigger))
        if H_COMMIT in headers:
            key, _, index = headers[H_COMMIT].rpartition("/")
            headers[H_COMMIT] = f"{_remap_key(key, run_id, new_run_id, seq_map)}/{index}"
        data = raw.data
        if rec.kind in ("sys", "cmd"):
            data = encode(_remap_body(rec.body, run_id, new_run_id, at_seq, seq_map))
        msg = OutMessage(run_subject(log.prefix, workflow, new_run_id, rec.kind, rec.type), data, headers)  # type: ignore[arg-type]  # a stored record's kind is one of the subject kinds
        res = await log.append([msg], idempotency_key=f"{new_run_id}:fork:{i}")
        if res.last_seq is None:  # pragma: no cover - both logs report it for single appends
            raise RunConflictError(f"the log did not report where record {i} of the fork went")
        seq_map[rec.seq] = res.last_seq
    done = RunForked(from_run=run_id, at_seq=at_seq, records=len(copied))
    closing = OutMessage(
        run_subject(log.prefix, workflow, new_run_id, "sys", "RunForked"),
        encode(done),
        {H_RUN: new_run_id, H_TYPE: "RunForked"},
    )
    await log.append([closing], idempotency_key=f"{new_run_id}:fork:end")
    return ForkResult(run_id=new_run_id, from_run=run_id, at_seq=at_seq, records=len(copied), seq_map=seq_map)
