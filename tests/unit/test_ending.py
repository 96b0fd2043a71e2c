"""The end projection (``engine.state.ending``) against the whole fold: over random histories of racing
executions, repeated messages, rollbacks, cancels and failures, both say the same about how the
run ended and which ``out`` events count, record by record."""

from __future__ import annotations

import random

from engine import Event, StartEvent
from engine.model.events import encode_event
from engine.model.records import (
    OutMessage,
    RawRecord,
    RolledBack,
    RunCancelled,
    RunCompleted,
    RunFailed,
    StepCompleted,
    StepFailed,
)
from engine.runtime.commands import start_messages
from engine.runtime.handler import outcome
from engine.state.ending import EndProjection
from engine.state.fold import RunState
from engine.wire.codec import decode_record, encode
from engine.wire.commit import copy_of, one_message_commit, tag_commit
from engine.wire.headers import H_COMMIT, H_RUN, H_STEP, H_TRIGGER, H_TYPE, commit_key
from engine.wire.subjects import run_subject

WF, RUN = "Ends", "r1"


class Note(Event):
    n: int


EVENTS = {"StartEvent": StartEvent, "Note": Note}


def _msg(kind: str, type_name: str, data: bytes, trigger: int) -> OutMessage:
    headers = {H_RUN: RUN, H_STEP: "finish", H_TRIGGER: str(trigger), H_TYPE: type_name}
    return OutMessage(run_subject("jetloom", WF, RUN, kind, type_name), data, headers)  # type: ignore[arg-type]


def execution(rng: random.Random, trigger: int, epoch: int, n: int) -> list[OutMessage]:
    """One execution of a step on ``trigger``: its head, 0-2 ``out`` Notes, and maybe the end
    (completed, or failed with or without a handler); or a one-message commit of the end."""
    if rng.random() < 0.15:
        body = RunCompleted(
            step="finish", trigger=trigger, event_type="StopEvent", event={"result": n}
        )
        return [
            one_message_commit(
                _msg("sys", "RunCompleted", encode(body), trigger),
                commit_key(RUN, trigger, "finish", epoch),
                "w",
            )
        ]
    rest = [
        _msg("out", "Note", encode_event(Note(n=n * 10 + i)), trigger)
        for i in range(rng.randint(0, 2))
    ]
    end = rng.random()
    if end < 0.5:
        body = RunCompleted(
            step="finish", trigger=trigger, event_type="StopEvent", event={"result": n}
        )
        rest.append(_msg("sys", "RunCompleted", encode(body), trigger))
    elif end < 0.65:
        failed = StepFailed(
            step="finish", trigger=trigger, attempt=1, error_type="ValueError", message=str(n),
            handled_by="on_error" if rng.random() < 0.5 else None,
        )  # fmt: skip
        rest.append(_msg("sys", "StepFailed", encode(failed), trigger))
    base = {H_RUN: RUN, H_STEP: "finish", H_TRIGGER: str(trigger)}
    done = StepCompleted(
        step="finish", trigger=trigger, emitted=[], messages=copy_of(rest, base) if rest else []
    )
    head = _msg("sys", "StepCompleted", encode(done), trigger)
    return tag_commit([head, *rest], commit_key(RUN, trigger, "finish", epoch)) if rest else [head]


def history(rng: random.Random) -> list[OutMessage]:
    """A run's stored messages: its start, then rounds of racing executions of the step on the
    start event, where only the first head of a commit is stored (the server drops the others as
    duplicates), with repeats, cancels, run failures and rollbacks between them."""
    out = list(start_messages("jetloom", WF, RUN, "StartEvent", encode_event(StartEvent())))
    epoch = 0
    heads_stored: set[int] = set()  # epochs whose commit has a head in the log
    for _ in range(rng.randint(1, 3)):
        runs = [execution(rng, 2, epoch, rng.randint(1, 9)) for _ in range(rng.randint(1, 3))]
        while any(runs):
            ex = rng.choice([r for r in runs if r])
            m = ex.pop(0)
            if m.subject.endswith("StepCompleted") or m.headers.get(H_COMMIT, "").endswith("/0"):
                if epoch in heads_stored:
                    continue
                heads_stored.add(epoch)
            out.append(m)
            if rng.random() < 0.1:
                out.append(rng.choice(out[2:]))  # a repair re-sent after the duplicate window
        r = rng.random()
        if r < 0.08:
            out.append(_msg("sys", "RunCancelled", encode(RunCancelled(reason="x")), 0))
        elif r < 0.14:
            out.append(_msg("sys", "RunFailed", encode(RunFailed(error_type="E", message="m")), 0))
        elif r < 0.6:
            epoch += 1
            to_seq = rng.randint(2, len(out))  # (sequences are positions + 1)
            out.append(_msg("sys", "RolledBack", encode(RolledBack(to_seq=to_seq, epoch=epoch)), 0))
    for m in out:
        if m.headers.get(H_TRIGGER) == "0":
            del m.headers[H_TRIGGER]  # type: ignore[attr-defined]
    return out


def test_the_projection_ends_and_streams_as_the_fold_does() -> None:
    rng = random.Random(20261201)
    ended = streamed = 0
    for case in range(600):
        raws = [
            RawRecord(seq, m.subject, dict(m.headers), m.data, seq)
            for seq, m in enumerate(history(rng), 1)
        ]
        full, light = RunState(), EndProjection(RUN)
        for raw in raws:
            rec = decode_record(raw, EVENTS)
            full.apply(rec)
            got = light.apply(raw, EVENTS)
            counts = (
                rec.kind == "out"
                and rec.seq not in full.orphans
                and not (full.rollbacks and rec.trigger is not None and full.excluded(rec.trigger))
            )
            assert (got is not None) == counts, (case, raw.seq)
            if got is not None:
                assert got.body == rec.body
                streamed += 1
            assert light.terminal == full.terminal, (case, raw.seq)
            if full.terminal:
                break
        if full.terminal:
            ended += 1
            stop, error = outcome(full, EVENTS)
            stop2, error2 = outcome(light, EVENTS)
            assert stop == stop2 and repr(error) == repr(error2), case
    assert ended > 200 and streamed > 200  # the histories reach both branches often


def test_records_of_other_kinds_are_passed_over() -> None:
    proj = EndProjection(RUN)
    start = start_messages("jetloom", WF, RUN, "StartEvent", encode_event(StartEvent()))
    raws = [
        RawRecord(seq, m.subject, dict(m.headers), m.data, seq) for seq, m in enumerate(start, 1)
    ]
    assert [proj.apply(r, EVENTS) for r in raws] == [None, None]
    assert proj.seq == 2 and proj.status == "running" and not proj.terminal
