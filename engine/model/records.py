"""The log's vocabulary: the record envelope and the engine's own records (subjects and headers
are in ``engine.wire.subjects`` and ``engine.wire.headers``; the layout in docs/architecture.md).

Payloads are JSON. Headers carry the record type and ids (``Jl-*``). Engine records are persisted
forever, so they follow msgspec's evolution rules: fields are only appended, with defaults.

The envelope and engine record types are ``gc=False`` (msgspec: never tracked by the cyclic garbage
collector). They hold only strings, numbers, JSON-like containers and event bodies, never anything
that refers back to them, so they cannot be part of a cycle, and untracked records spare the
collector's passes over every live record (measured in benchmarks/).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = [
    "ChildOutcome",
    "CommitMessage",
    "DeadLetterRef",
    "ParentRef",
    "OutMessage",
    "RawRecord",
    "Record",
    "RunCancelled",
    "RunCompleted",
    "RunFailed",
    "RolledBack",
    "RunForked",
    "RunStarted",
    "StepCompleted",
    "StepFailed",
    "StepRetrying",
    "SYS_TYPES",
    "Resume",
    "ResumeEvent",
    "StepSuspended",
    "completed_step",
    "is_one_message_commit",
]

class RawRecord(msgspec.Struct, frozen=True, gc=False):
    """One message of the log as stored: the envelope every record shares.

    Attributes:
        seq: stream sequence (1-based, unique and increasing across the whole stream).
        subject: the run subject it was appended on.
        headers: its headers (``Jl-*`` ids; may be empty for messages published by hand).
        data: the JSON payload.
        time_ns: when the log stored it, nanoseconds since the Unix epoch (the server's clock).
    """

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes
    time_ns: int


class OutMessage(msgspec.Struct, frozen=True, gc=False):
    """A message to append: subject, payload and headers."""

    subject: str
    data: bytes
    headers: dict[str, str] = {}


# ---- engine records (sys.<Name>) ------------------------------------------------------------------


class CommitMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A copy of one message of a commit, carried by the commit's first record so that a commit
    interrupted part-way can be completed with exactly the original messages.

    Attributes:
        kind: ``evt``, ``out`` or ``sys``.
        type: the event or record type (the last subject token; also its ``Jl-Type``).
        data: the JSON payload, embedded as is (``msgspec.Raw``: the fold does not decode it).
        headers: headers the first record does not imply (``Jl-Target``, ``Jl-Class``).
    """

    kind: str
    type: str
    data: msgspec.Raw
    headers: dict[str, str] = {}


class ParentRef(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The step wait a child run answers (``ctx.run_workflow``): where its end is reported."""

    workflow: str
    run_id: str
    step: str
    trigger: int
    wait: str


class RunStarted(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """First record of a run; the start event follows it in the same commit.

    Attributes:
        messages: copy of the rest of the start commit (the start event), empty when the log
            appends atomically.
        forked_from: for a fork (``engine.runtime.timetravel.fork``), the run it copies; its copy is
            complete once ``sys.RunForked`` follows. Empty for a run started normally.
        forked_at: the sequence of ``forked_from`` the copy ends at (0 when not a fork).
        parent: for a child run, the parent step's wait it answers (``None`` for a top-level run).
        initial_state: the user state the run starts with (a session's run starts with the
            state the session's previous run ended with); empty by default.
        timeout_at_ns: when the run's timeout fires (ns since the epoch), 0 for none: whoever
            appends the run's terminal record then removes the pending schedule
            (``engine.runtime.recovery``).
    """

    workflow: str
    run_id: str
    start_event: str
    messages: list[CommitMessage] = []
    forked_from: str = ""
    forked_at: int = 0
    parent: ParentRef | None = None
    initial_state: dict[str, Any] = {}
    timeout_at_ns: int = 0


class StepCompleted(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A step handled its trigger; committed together with everything it emitted.

    Attributes:
        state: the state changes it made, as ``{"dot.path": value}`` in the order they were made.
        consumed: stream sequences of events a completed ``collect_events`` took off the buffer.
        emitted: names of the events it emitted, in order.
        duration_ms: wall time the step's code ran, milliseconds.
        worker: ``host:pid`` of the process that ran it.
        messages: copy of the rest of the commit (emitted events, stream output, RunCompleted), in
            order; the commit has ``1 + len(messages)`` messages. Empty when the log appends
            atomically (nothing to complete after a crash) or when the step emitted nothing.
    """

    step: str
    trigger: int
    attempt: int = 1
    emitted: list[str] = []
    state: dict[str, Any] = {}
    consumed: list[int] = []
    duration_ms: float = 0.0
    worker: str = ""
    messages: list[CommitMessage] = []


class StepFailed(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A step raised (and its retry policy, if any, gave up); the run fails with it, unless
    ``handled_by`` names the workflow's error handler step, to which a ``StepFailedEvent`` is
    committed with this record (``messages`` then holds its copy, as in ``StepCompleted``)."""

    step: str
    trigger: int
    error_type: str
    message: str
    traceback: str = ""
    attempt: int = 1
    duration_ms: float = 0.0
    worker: str = ""
    handled_by: str = ""
    messages: list[CommitMessage] = []


class StepRetrying(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A step attempt failed and the step's retry policy asked for another attempt.

    Attributes:
        attempt: the attempt that failed (1-based); the next one is ``attempt + 1``.
        delay_ms: how long after this failure the next attempt is scheduled, milliseconds
            (jitter included: drawn once, by the worker that recorded this).
        retry_at_ns: when the next attempt's ``Resume`` fires, ns since the epoch.
    """

    step: str
    trigger: int
    attempt: int
    error_type: str
    message: str
    traceback: str = ""
    delay_ms: float = 0.0
    retry_at_ns: int = 0
    duration_ms: float = 0.0
    worker: str = ""


class RunCompleted(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A step returned a StopEvent. ``event`` holds the StopEvent's fields (``result`` among them)."""

    step: str
    trigger: int
    event_type: str
    event: dict[str, Any] = {}


class DeadLetterRef(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Which trigger of a run was dead-lettered, by which step's consumer, and why."""

    subject: str
    seq: int
    step: str
    reason: str


class RunFailed(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """The run failed for a reason other than a step's exception: a timeout
    (``WorkflowTimeoutError``), a workflow class that does not match the log
    (``WorkflowVersionError``), or a trigger that was dead-lettered (``DeadLetteredError``, with
    ``dead_letter`` set; a field appended later, absent from older records)."""

    error_type: str
    message: str
    dead_letter: DeadLetterRef | None = None


class RunCancelled(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    reason: str = ""


class StepSuspended(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A step is waiting (``ctx.wait_for_event`` or ``ctx.sleep``) and no worker holds it.

    The step runs again from its start when a ``Resume`` for it arrives; waits it already passed
    then return at once from the log, so only the code after the last wait does new work.

    Attributes:
        wait: the wait's id within the step's execution (``waiter_id``, or ``w<n>`` for the n-th).
        kind: ``"event"`` (wait_for_event) or ``"timer"`` (sleep).
        event_type: the awaited event's name (event waits).
        requirements: field values the awaited event must have (event waits).
        fire_at_ns: when the timer fires / the wait times out, ns since the epoch (0: never).
        event_schema: JSON schema of the awaited event's fields, so that a process without the
            workflow's code (the control plane) can validate an answer.
        child_workflow / child_run: the child run a ``"child"`` wait (``ctx.run_workflow``)
            awaits.
    """

    step: str
    trigger: int
    wait: str
    kind: str
    event_type: str | None = None
    requirements: dict[str, Any] = {}
    fire_at_ns: int = 0
    attempt: int = 1
    event_schema: dict[str, Any] = {}
    child_workflow: str | None = None
    child_run: str | None = None


class ResumeEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The event that resolved a wait: its name, stream sequence and fields."""

    type: str
    seq: int
    data: dict[str, Any] = {}


class ChildOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """How a child run ended, as reported to its parent.

    Attributes:
        status: ``completed``, ``failed`` or ``cancelled``.
        event_type / event: the StopEvent's name and fields (completed).
        error_type / message / step / traceback: why it failed (the StepFailed or RunFailed
            record), or the cancel reason in ``message``.
    """

    workflow: str
    run_id: str
    status: str
    event_type: str | None = None
    event: dict[str, Any] = {}
    error_type: str | None = None
    message: str = ""
    step: str | None = None
    traceback: str = ""


class Resume(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``cmd.<step>``: run ``step`` on trigger ``trigger`` again, because ``wait`` was resolved.

    Attributes:
        reason: ``"event"`` (an awaited event arrived; ``event`` holds it), ``"timer"`` (a sleep
            ended), ``"timeout"`` (an event or child wait timed out), ``"rollback"`` (a rollback
            made the trigger pending again; ``wait`` is ``None``), ``"child"`` (the awaited child
            run ended; ``child`` says how), ``"retry"`` (the next attempt after a ``StepRetrying``),
            ``"manual"`` (retry-from-failure: the fold reopens the failed run).
        attempt: for ``retry``/``manual``, the attempt this starts (0 otherwise).
    """

    step: str
    trigger: int
    reason: str
    wait: str | None = None
    event: ResumeEvent | None = None
    child: ChildOutcome | None = None
    attempt: int = 0


class RolledBack(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``sys.RolledBack``: the run continues as if its records after ``to_seq`` (up to this
    marker) had not happened. They stay in the log, readable; the fold skips them
    (``RunState.rollbacks``), and the ``Resume(reason="rollback")`` records that follow the marker
    rerun the steps whose triggers were pending as of ``to_seq``.

    Attributes:
        to_seq: the last stream sequence of the run that still counts.
        epoch: how many rollbacks the run has had, this one included (1 for the first); step
            commits after it are keyed ``<run>:<trigger>:<step>@<epoch>``.
        reason: free text recorded by whoever asked for it.
        pending: the ``[trigger seq, step]`` pairs rerun because of it.
    """

    to_seq: int
    epoch: int = 1
    reason: str = ""
    pending: list[tuple[int, str]] = []


class RunForked(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``sys.RunForked``: the last record of a fork's copied prefix (the first is its
    ``RunStarted`` with ``forked_from`` set); workers hold the fork's triggers back until it is in
    the log.

    Attributes:
        from_run: the run the prefix was copied from.
        at_seq: the last sequence of ``from_run`` that was copied.
        records: how many records were copied (this one not included).
    """

    from_run: str
    at_seq: int
    records: int


SYS_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    t.__name__: t
    for t in (
        RunStarted,
        StepCompleted,
        StepFailed,
        StepRetrying,
        StepSuspended,
        RunCompleted,
        RunFailed,
        RunCancelled,
        RolledBack,
        RunForked,
    )
}


class Record(msgspec.Struct, frozen=True, gc=False):
    """A decoded record: what the fold consumes.

    Attributes:
        body: the decoded event (``evt``/``out``; a plain dict when the type is unknown to the
            reader), the engine record (``sys``), or ``None`` when the payload did not decode.
        error: why the payload did not decode, else ``None``. The fold skips such records.
        commit: ``<commit key>/<index>`` of a message of a multi-message commit (``Jl-Commit``).
    """

    seq: int
    kind: str
    type: str
    workflow: str
    run_id: str
    time_ns: int
    body: Any
    step: str | None = None
    trigger: int | None = None
    target: str | None = None
    error: str | None = None
    commit: str | None = None


def is_one_message_commit(kind: str, type_name: str, commit: str | None, step: str | None) -> bool:
    """Whether a message is the whole commit of a step (``engine.wire.commit.one_message_commit``):
    an ``evt``, or a ``sys.RunCompleted``, tagged as message 0 of its commit (``Jl-Commit:
    <key>/0``) and written by a step. (Other engine records are message 0 of a commit only as its
    head: a ``StepCompleted`` or ``RunStarted``, or a single record without a tag.)"""
    return (
        step is not None
        and commit is not None
        and commit.endswith("/0")
        and (kind == "evt" or (kind == "sys" and type_name == "RunCompleted"))
    )


def completed_step(rec: Record) -> tuple[int, str] | None:
    """``(trigger, step)`` when ``rec`` records that a step completed on a trigger: a
    ``sys.StepCompleted``, or the event or ``RunCompleted`` of a one-message commit; else
    ``None``."""
    if isinstance(rec.body, StepCompleted):
        return rec.body.trigger, rec.body.step
    if rec.trigger is not None and is_one_message_commit(rec.kind, rec.type, rec.commit, rec.step):
        return rec.trigger, rec.step  # type: ignore[return-value]  # is_one_message_commit checked that step is set
    return None
