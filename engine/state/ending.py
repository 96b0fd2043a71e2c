"""The end projection: what someone waiting on a run needs of its log, and no more.

A ``WorkflowHandler`` (or any follower of a run) needs to know when the run ends, how (its result
or error), and which ``out`` events to stream. The whole fold (``engine.state.fold.RunState``) answers
that too, but it decodes every record, including each commit's head with its copy of the commit,
to build state the waiter never looks at. ``EndProjection`` reads the headers of ``sys`` records
and decodes only the few whose body it needs: the terminal records, ``RolledBack`` and the
``out`` events. ``evt`` and ``cmd`` records play no part (a follower can leave them out of its
subscription).

Which records count is decided as the fold decides it (``engine.wire.commit``; ``RunState.apply``):

- a record whose trigger lies in a range a rollback undid does not count;
- of a pipelined commit, the first head stored stands: a message counts only if it is of the same
  execution as that head, and only once per index (``Jl-Commit: <key>/<index>:<execution>``);
  the others are orphans; a rollback undoes what the records after its ``to_seq`` said;
- the first terminal record that counts ends the run.

One difference from the fold, on purpose: the fold lets a second head of a commit stand when it
is stored after the first commit completed and the log's duplicate window passed; here the first
head stands for good. No worker re-executes a step whose commit it has folded, so the case needs
a commit repeated after the window by a worker that never saw it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from engine.model.events import Event
from engine.model.records import RawRecord, Record, RolledBack, RunCompleted, RunFailed, StepFailed
from engine.state.orphans import OrphanFilter
from engine.wire.codec import decode_record, subject_parts
from engine.wire.headers import H_COMMIT, H_TRIGGER

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "ENDING_KINDS",
    "ENDING_STATUS",
    "ENDING_TYPES",
    "FAILED",
    "FINAL_TYPES",
    "FOLLOWED_KINDS",
    "PENDING",
    "RUNNING",
    "TERMINAL",
    "EndProjection",
    "ends_run",
]

# A run's status (``RunState.status``, ``EndProjection.status``, the control plane's listings).
PENDING: Final = "pending"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
TERMINAL: Final = frozenset({COMPLETED, FAILED, CANCELLED})

#: The ``sys`` record types that end a run whatever their body says.
FINAL_TYPES: Final = ("RunCompleted", "RunFailed", "RunCancelled")
#: Every ``sys`` record type that may end a run, with the status it ends in: the final types and
#: ``StepFailed``, which ends it unless an error handler took the failure over (``handled_by``).
ENDING_STATUS: Final = {"RunCompleted": COMPLETED, "RunFailed": FAILED, "RunCancelled": CANCELLED, "StepFailed": FAILED}
ENDING_TYPES: Final = frozenset(ENDING_STATUS)


def ends_run(type_name: str, handled_by: str | None = None) -> bool:
    """Whether a ``sys`` record of type ``type_name`` ends its run (the first such record that
    counts does; later ones change nothing): ``RunCompleted``, ``RunFailed``, ``RunCancelled``,
    and a ``StepFailed`` whose ``handled_by`` is empty (no ``@catch_error`` step took it over).

    Args:
        type_name: the record's type (its subject's last token, ``Jl-Type``).
        handled_by: the ``handled_by`` of a ``StepFailed`` (``None`` if unknown or absent).
    """
    if type_name == "StepFailed":
        return not handled_by
    return type_name in ENDING_TYPES

#: The record kinds an ``EndProjection`` reads (``EventLog.follow(kinds=...)``) to stream a
#: run's ``out`` events as well as learn how it ends.
FOLLOWED_KINDS: tuple[str, ...] = ("sys", "out")
#: The record kinds that decide how a run ends: enough for a waiter that streams nothing.
ENDING_KINDS: tuple[str, ...] = ("sys",)

# sys records whose body the projection decodes; the rest it reads by their headers only
_DECODED = ENDING_TYPES | {"RolledBack"}


class EndProjection:
    """How a run ended, and its ``out`` events, from its ``sys`` and ``out`` records in log order.

    Attributes (the names ``engine.runtime.handler.outcome`` reads, as on ``RunState``):
        run_id: the run.
        seq: stream sequence of the last record applied (0: none yet).
        status: ``"pending"`` until a record arrives, ``"running"``, then ``"completed"``,
            ``"failed"`` or ``"cancelled"``.
        result: the ``RunCompleted`` of a completed run.
        error: the ``StepFailed`` or ``RunFailed`` of a failed run.
    """

    __slots__ = ("_commits", "_rollbacks", "error", "result", "run_id", "seq", "status")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0
        self.status = PENDING
        self.result: RunCompleted | None = None
        self.error: StepFailed | RunFailed | None = None
        self._rollbacks: list[tuple[int, int]] = []  # (to_seq, marker seq)
        self._commits = OrphanFilter(repeats=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def apply(
        self, raw: RawRecord, events: Mapping[str, type[Event]] | None = None
    ) -> Record | None:
        """Apply one record (records in increasing ``seq`` order); returns the decoded record of
        an ``out`` event that counts (to be streamed), else ``None``. Records of other kinds than
        ``sys`` and ``out``, and records of no run subject, are passed over."""
        parts = subject_parts(raw.subject)
        if parts is None:
            return None
        self.seq = raw.seq
        kind = parts.kind
        if kind != "sys" and kind != "out":
            return None
        if self.status == PENDING:
            self.status = RUNNING
        h = raw.headers
        if parts.type == "RolledBack" and kind == "sys":
            rec = decode_record(raw, events)
            if isinstance(rec.body, RolledBack):
                self._rollbacks.append((rec.body.to_seq, raw.seq))
                self._commits.roll_back(rec.body.to_seq)
            return None
        if self._rollbacks:
            trigger = h.get(H_TRIGGER)
            if trigger is not None and trigger.isdigit() and self._excluded(int(trigger)):
                return None
        tag = h.get(H_COMMIT)
        if tag is not None and not self._commits.counts_tag(tag, raw.seq):
            return None
        if kind == "out":
            rec = decode_record(raw, events)
            return rec if rec.error is None else None
        if parts.type not in _DECODED or self.terminal:
            return None
        body = decode_record(raw, events).body
        if isinstance(body, RunCompleted):
            self.status, self.result = COMPLETED, body
        elif isinstance(body, RunFailed):
            self.status, self.error = FAILED, body
        elif isinstance(body, StepFailed) and ends_run(parts.type, body.handled_by):
            self.status, self.error = FAILED, body
        elif parts.type == "RunCancelled" and body is not None:
            self.status = CANCELLED
        return None

    def _excluded(self, seq: int) -> bool:
        return any(n < seq < m for n, m in self._rollbacks)
