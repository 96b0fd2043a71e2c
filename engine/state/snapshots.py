"""Snapshots of a run's fold, so rebuilding a long run reads the latest snapshot and the records
after it instead of the whole log (docs/architecture.md).

A snapshot is ``RunState`` compacted (``engine.state.fold.compact``: the details of a long run's past
that no later question needs are dropped, so its size does not grow with the run) and serialised
with msgspec (MessagePack, zlib-compressed) together with the sequence it covers (``RunState.seq``)
and a format version. It is only ever an optimisation: a
snapshot that is missing, of another format version, or that does not decode is ignored and the
run is folded from its log. Any process may write one; a store keeps the one with the highest
sequence (``engine.ports.snapshots.SnapshotStore.put``), so concurrent writers cannot move a run's
snapshot backwards.

Stores: ``engine.memory.snapshots.MemorySnapshots`` (in-process, beside ``MemoryLog``) and
``engine.jetstream.snapshots.KvSnapshots`` (the JetStream KV bucket ``<prefix>_snapshots``, key
``<workflow>.<run_id>``).
"""

from __future__ import annotations

import zlib
from typing import Any, Final

import msgspec

from engine.model.records import (
    CommitMessage,
    ParentRef,
    Resume,
    RunCompleted,
    RunFailed,
    StepFailed,
    StepRetrying,
    StepSuspended,
)
from engine.state.fold import (
    KEEP_EVENTS,
    DroppedEvents,
    HorizonDone,
    PendingCommit,
    RunState,
    compact,
)

__all__ = [
    "DEFAULT_SNAPSHOT_EVERY",
    "HANDLED_SLOTS",
    "SNAPSHOT_VERSION",
    "UnsupportedState",
    "decode_snapshot",
    "encode_snapshot",
    "snapshot_seq",
]

SNAPSHOT_VERSION: Final = 2  # 2: compacted (horizon, known, dropped); 1 held every detail
DEFAULT_SNAPSHOT_EVERY: Final = 1000  # records folded between two snapshots of a run

# RunState slots a snapshot carries; "_memos" is a cache rebuilt on demand. A slot added to
# RunState and not handled here makes encode_snapshot refuse (the run is then folded from its log,
# which is always correct) until this module learns it: tests/unit/test_snapshots.py pins the list.
HANDLED_SLOTS: Final = frozenset(
    {
        "workflow", "run_id", "seq", "status", "state", "state_changed_seq", "start_event",
        "result", "error", "done", "events", "consumed", "collections", "_memos", "started_ns",
        "ended_ns", "steps_completed", "steps_failed", "records", "skipped", "incomplete",
        "orphans", "waits", "resolved", "claimed", "rollbacks", "epoch", "forking", "parent", "_log",
        "attempts", "retrying", "retried_from", "first_failed_ns", "horizon", "dropped",
        "base_seq", "timeout_at_ns",
    }
)  # fmt: skip
# "_log" (every record that counts, kept for a rollback to refold) is not carried: a run loaded
# from a snapshot that meets a RolledBack record is reloaded from its whole log (engine.runtime.runs;
# the fold raises HistoryNeeded too, base_seq). "base_seq" is the snapshot's own seq on decode.


class _Pending(msgspec.Struct, array_like=True):
    key: str
    head_seq: int
    base: dict[str, str]
    messages: bytes  # JSON list of CommitMessage (their payloads are raw JSON)
    seen: list[int]
    execution: str | None = None


class _Wait(msgspec.Struct, array_like=True):
    trigger: int
    step: str
    wait: str
    seq: int
    record: StepSuspended


class _Resolved(msgspec.Struct, array_like=True):
    trigger: int
    step: str
    wait: str
    resume: Resume


class _Dropped(msgspec.Struct, array_like=True):
    type: str
    untargeted: int
    targeted: dict[str, int]
    consumed: dict[str, int]


class _Snapshot(msgspec.Struct, kw_only=True):
    """The persisted form. Fields are only appended, with defaults (msgspec evolution rules);
    a change of meaning bumps ``SNAPSHOT_VERSION`` instead."""

    v: int
    workflow: str
    run_id: str
    seq: int
    status: str
    state: dict[str, Any]
    state_changed_seq: int
    start_event: str | None
    result: RunCompleted | None
    error_kind: str | None
    error: dict[str, Any] | None
    done: list[tuple[int, str]]
    events: dict[str, list[tuple[int, str | None]]]
    consumed: dict[str, dict[int, int]]
    collections: dict[str, list[list[int]]]
    started_ns: int | None
    ended_ns: int | None
    steps_completed: int
    steps_failed: int
    records: int
    skipped: int
    incomplete: list[_Pending]
    waits: list[_Wait]
    resolved: list[_Resolved]
    claimed: list[int]
    rollbacks: list[tuple[int, int]] = []
    epoch: int = 0
    forking: bool = False
    parent: ParentRef | None = None
    # retries: per (trigger, step)
    attempts: list[tuple[int, str, int]] = []
    retrying: list[tuple[int, str, StepRetrying]] = []
    retried_from: list[tuple[int, str, int]] = []
    first_failed_ns: list[tuple[int, str, int]] = []
    timeout_at_ns: int = 0
    orphans: list[int] = []
    # compaction (engine.state.fold.compact): details at or below the horizon were dropped, except
    # those of the triggers in known; what was dropped of each event type
    horizon: int = 0
    known: list[int] = []
    dropped: list[_Dropped] = []


class _Head(msgspec.Struct):
    v: int
    seq: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Snapshot)
_head_decoder = msgspec.msgpack.Decoder(_Head)
_messages_decoder = msgspec.json.Decoder(list[CommitMessage])
_ERRORS: Final[dict[str, type[StepFailed] | type[RunFailed]]] = {
    "StepFailed": StepFailed,
    "RunFailed": RunFailed,
}


class UnsupportedState(ValueError):
    """``RunState`` has slots this snapshot format does not know; no snapshot is written."""


def encode_snapshot(st: RunState, *, level: int = 1, keep_events: int = KEEP_EVENTS) -> bytes:
    """Serialise ``st`` (covering every record up to ``st.seq``), compacted (``compact``).

    Args:
        st: the fold; read, not changed. The caller keeps it from changing meanwhile.
        level: zlib level (default 1). Compacted, a snapshot's size hardly grows with the
            number of records it covers (sizes in benchmarks/, scenario d).
        keep_events: newest events whose details are kept whatever happened to them (default
            ``KEEP_EVENTS``, 256): a trigger among them that a fresh worker meets is answered
            from the snapshot; an older one it had not seen handled costs a whole-log reload.

    Returns:
        the snapshot bytes (zlib over MessagePack).

    Raises:
        UnsupportedState: ``RunState`` gained a slot this format does not carry.
    """
    unknown = set(RunState.__slots__) - HANDLED_SLOTS
    if unknown:
        raise UnsupportedState(f"RunState slots not in the snapshot format: {sorted(unknown)}")
    st = compact(st, keep_events=keep_events)
    error = st.error
    snap = _Snapshot(
        v=SNAPSHOT_VERSION,
        workflow=st.workflow,
        run_id=st.run_id,
        seq=st.seq,
        status=st.status,
        state=st.state,
        state_changed_seq=st.state_changed_seq,
        start_event=st.start_event,
        result=st.result,
        error_kind=type(error).__name__ if error is not None else None,
        error=msgspec.to_builtins(error) if error is not None else None,
        done=sorted(st.done),
        events=st.events,
        consumed=st.consumed,
        collections={k: [list(c) for c in v] for k, v in st.collections.items()},
        started_ns=st.started_ns,
        ended_ns=st.ended_ns,
        steps_completed=st.steps_completed,
        steps_failed=st.steps_failed,
        records=st.records,
        skipped=st.skipped,
        incomplete=[
            _Pending(
                p.key, p.head_seq, p.base, msgspec.json.encode(p.messages), sorted(p.seen), p.execution
            )
            for p in st.incomplete.values()
        ],
        waits=[_Wait(t, s, w, seq, rec) for (t, s, w), (seq, rec) in st.waits.items()],
        resolved=[_Resolved(t, s, w, r) for (t, s, w), r in st.resolved.items()],
        claimed=sorted(st.claimed),
        rollbacks=st.rollbacks,
        epoch=st.epoch,
        forking=st.forking,
        parent=st.parent,
        timeout_at_ns=st.timeout_at_ns,
        attempts=[(t, s, n) for (t, s), n in st.attempts.items()],
        retrying=[(t, s, r) for (t, s), r in st.retrying.items()],
        retried_from=[(t, s, n) for (t, s), n in st.retried_from.items()],
        first_failed_ns=[(t, s, n) for (t, s), n in st.first_failed_ns.items()],
        orphans=sorted(st.orphans),
        horizon=st.horizon,
        known=sorted(getattr(st.done, "known", ())),
        dropped=[_Dropped(t, d.untargeted, d.targeted, d.consumed) for t, d in st.dropped.items()],
    )
    # the sequence first, readable without decoding the rest (snapshot_seq)
    return zlib.compress(_encoder.encode(_Head(SNAPSHOT_VERSION, st.seq)), level) + zlib.compress(
        _encoder.encode(snap), level
    )


def _split(data: bytes) -> tuple[bytes, bytes]:
    d = zlib.decompressobj()
    head = d.decompress(data)
    return head, d.unused_data


def snapshot_seq(data: bytes) -> int | None:
    """The sequence a snapshot covers, or ``None`` if it is of another format version or broken."""
    try:
        head = _head_decoder.decode(_split(data)[0])
    except (zlib.error, msgspec.DecodeError, ValueError):
        return None
    return head.seq if head.v == SNAPSHOT_VERSION else None


def decode_snapshot(data: bytes) -> RunState | None:
    """The ``RunState`` a snapshot holds; ``None`` when it is of another format version or does
    not decode (the caller then folds the run from its log)."""
    try:
        head_bytes, rest = _split(data)
        head = _head_decoder.decode(head_bytes)
        if head.v != SNAPSHOT_VERSION:
            return None
        snap = _decoder.decode(zlib.decompress(rest))
    except (zlib.error, msgspec.DecodeError, ValueError):
        return None
    st = RunState(snap.workflow, snap.run_id)
    st.seq = snap.seq
    st.status = snap.status
    st.state = snap.state
    st.state_changed_seq = snap.state_changed_seq
    st.start_event = snap.start_event
    st.result = snap.result
    if snap.error_kind is not None and snap.error is not None:
        st.error = msgspec.convert(snap.error, _ERRORS[snap.error_kind])
    if snap.horizon:
        st.horizon = snap.horizon
        st.done = HorizonDone(((t, s) for t, s in snap.done), snap.horizon, set(snap.known), snap.run_id)
        st.dropped = {d.type: DroppedEvents(d.untargeted, d.targeted, d.consumed) for d in snap.dropped}
    else:
        st.done = {(t, s) for t, s in snap.done}
    st.base_seq = snap.seq
    st.events = {k: [(seq, target) for seq, target in v] for k, v in snap.events.items()}
    st.consumed = snap.consumed
    st.collections = {k: [tuple(c) for c in v] for k, v in snap.collections.items()}
    st.started_ns = snap.started_ns
    st.ended_ns = snap.ended_ns
    st.steps_completed = snap.steps_completed
    st.steps_failed = snap.steps_failed
    st.records = snap.records
    st.skipped = snap.skipped
    for p in snap.incomplete:
        pending = PendingCommit(
            p.key, p.head_seq, p.base, _messages_decoder.decode(p.messages), p.execution
        )
        pending.seen = set(p.seen)
        st.incomplete[p.key] = pending
    st.waits = {(w.trigger, w.step, w.wait): (w.seq, w.record) for w in snap.waits}
    st.resolved = {(r.trigger, r.step, r.wait): r.resume for r in snap.resolved}
    st.claimed = set(snap.claimed)
    st.orphans = set(snap.orphans)
    st.rollbacks = [(a, b) for a, b in snap.rollbacks]
    st.epoch = snap.epoch
    st.forking = snap.forking
    st.parent = snap.parent
    st.timeout_at_ns = snap.timeout_at_ns
    st.attempts = {(t, s): n for t, s, n in snap.attempts}
    st.retrying = {(t, s): r for t, s, r in snap.retrying}
    st.retried_from = {(t, s): n for t, s, n in snap.retried_from}
    st.first_failed_ns = {(t, s): n for t, s, n in snap.first_failed_ns}
    return st
