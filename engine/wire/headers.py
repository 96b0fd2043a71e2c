"""The headers every record carries (``Jl-*``), and the keys and tags of commits that go in them
(``Jl-Commit``) and in the idempotency ids of their messages (``Nats-Msg-Id``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "H_ATTEMPT",
    "H_CLASS",
    "H_COMMIT",
    "H_FAN_OUT",
    "H_HANDOFF_ACK",
    "H_LENGTH",
    "H_NEW_RUN",
    "H_RUN",
    "H_RUN_TRACE",
    "H_STEP",
    "H_TARGET",
    "H_TRIGGER",
    "H_TRACEPARENT",
    "H_TRACESTATE",
    "H_TYPE",
    "H_WORKER",
    "commit_key",
    "commit_tag",
    "execution_of",
    "message_id",
    "parse_commit_tag",
]

H_TYPE: Final = "Jl-Type"  # record type: event class name or engine record name
H_RUN: Final = "Jl-Run"  # run id
H_STEP: Final = "Jl-Step"  # step that committed the record
H_TRIGGER: Final = "Jl-Trigger"  # stream sequence of the event that step was handling
H_TARGET: Final = "Jl-Target"  # send_event(..., step=...) target
H_ATTEMPT: Final = "Jl-Attempt"  # 1-based attempt of the step on that trigger
# On the event of a one-message commit (engine.wire.commit): the worker that ran the step, as
# ``StepCompleted.worker`` says it for other commits.
H_WORKER: Final = "Jl-Worker"
H_CLASS: Final = "Jl-Class"  # module:QualName of a stream output event
H_COMMIT: Final = "Jl-Commit"  # <commit key>/<index> on every message of a multi-message commit
# On the events of a step's commit: records in the run's log as the committing worker had folded
# it. A worker that does not hold the run skips the snapshot lookup (a KV round trip) when this says
# the run is shorter than a snapshot interval (``engine.runtime.runs.RunCache.get``).
H_LENGTH: Final = "Jl-Length"
# On the start event of a run started under a run id made for it (no parent, no initial state, no
# idempotency ids; ``engine.runtime.inprocess.append_start(fresh=True)``): nobody else can have written to
# the run, so the run's log is this commit's RunStarted, stored just before, and this event. The
# worker of the first step folds that from the event itself instead of reading the run.
H_NEW_RUN: Final = "Jl-New-Run"
# On each event of a step's commit that emits more than one event for the steps (a fan-out): run
# affinity leaves these where they land, so that the parts of a fan-out spread over processes.
H_FAN_OUT: Final = "Jl-Fan-Out"
# On a delivery handed over to its run's owner (run affinity, ``engine.jetstream.pull``): the
# JetStream ack subject of the original delivery, where the owner settles it.
H_HANDOFF_ACK: Final = "Jl-Handoff-Ack"
# Trace context (engine.runtime.tracing), only while tracing is on: the W3C trace context of the span
# that appended the record (the standard headers, as the OpenTelemetry propagators write them), and
# the context of the run's start span, which every record a step commits carries on.
H_TRACEPARENT: Final = "traceparent"
H_TRACESTATE: Final = "tracestate"
H_RUN_TRACE: Final = "Jl-Run-Trace"


def commit_key(run_id: str, trigger_seq: int, step: str, epoch: int = 0) -> str:
    """The idempotency key of a step's commit for one trigger: ``<run_id>:<trigger_seq>:<step>``,
    with ``@<epoch>`` appended after the run's ``epoch``-th rollback (so that a step rerun after a
    rollback is not dropped as a duplicate of the commit the rollback undid)."""
    key = f"{run_id}:{trigger_seq}:{step}"
    return key if epoch == 0 else f"{key}@{epoch}"


def commit_tag(key: str, index: int, execution: str | None = None) -> str:
    """The ``Jl-Commit`` value of message ``index`` of commit ``key``: ``<key>/<index>``, and
    ``<key>/<index>:<execution>`` when the commit is sent pipelined (``engine.wire.commit``): the id of
    the step execution that wrote it, by which the fold tells its messages from those of another
    execution of the same commit."""
    tag = f"{key}/{index}"
    return tag if execution is None else f"{tag}:{execution}"


def parse_commit_tag(tag: str) -> tuple[str, int, str | None] | None:
    """``(key, index, execution or None)`` of a ``Jl-Commit`` value; ``None`` if malformed."""
    key, sep, rest = tag.rpartition("/")
    if not sep:
        return None
    index, _, execution = rest.partition(":")
    if not index.isdigit():
        return None
    return key, int(index), execution or None


def execution_of(headers: Mapping[str, str]) -> str | None:
    """The execution id in a message's ``Jl-Commit`` header, if any."""
    tag = headers.get(H_COMMIT)
    if tag is None:
        return None
    parsed = parse_commit_tag(tag)
    return parsed[2] if parsed is not None else None


def message_id(key: str, index: int, execution: str | None = None) -> str:
    """The idempotency id (``Nats-Msg-Id``) of message ``index`` of the commit ``key``: the key
    itself for the first message (so a single-message commit and the head of a larger one share
    it, and of two executions of one commit only one head is stored), else the message's
    ``commit_tag``: a message of one execution is a duplicate only of itself (a repair re-sending
    it), never of another execution's message at the same index."""
    return key if index == 0 else commit_tag(key, index, execution)
