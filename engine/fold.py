"""The fold: a run's state is ``fold(records)``, a pure function of its log.

No clock, no I/O, no randomness: every time comes from the records (the server's timestamps).
``RunState.apply`` is the reducer; ``fold`` applies it to a sequence. A step sees the state as of
its trigger's sequence (DESIGN.md §3): ``state`` is kept as of ``seq``, and ``collect`` answers fan-in
questions as of any earlier sequence, which is what makes fan-in race-free across processes.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any, Final

from .records import (
    Record,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    StepCompleted,
    StepFailed,
)

__all__ = ["RUNNING", "TERMINAL", "RunState", "fold", "get_path", "set_path"]

PENDING: Final = "pending"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
TERMINAL: Final = frozenset({COMPLETED, FAILED, CANCELLED})

_MISSING = object()


def set_path(root: dict[str, Any], path: str, value: Any) -> None:
    """Set ``root["a"]["b"] = value`` for ``path="a.b"``, creating dicts on the way."""
    *parents, leaf = path.split(".")
    node = root
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


def get_path(root: dict[str, Any], path: str, default: Any = _MISSING) -> Any:
    """``root["a"]["b"]`` for ``path="a.b"``.

    Raises:
        KeyError: the path is absent and no default was given.
    """
    node: Any = root
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            if default is _MISSING:
                raise KeyError(path)
            return default
        node = node[key]
    return node


class RunState:
    """Everything known about one run, as of record ``seq``.

    Attributes:
        status: ``pending`` (no RunStarted yet), ``running``, ``completed``, ``failed``, ``cancelled``.
        state: the user state (``ctx.store``), a JSON-like dict.
        state_changed_seq: sequence of the last record that changed ``state`` (0 if none).
        result: the RunCompleted record, once completed.
        error: the StepFailed or RunFailed record, once failed.
        done: ``(trigger_seq, step)`` pairs already handled (completed or failed).
        events: per event type, the ``(seq, target)`` of every event appended.
        consumed: per step, ``{event_seq: seq_of_the_record_that_consumed_it}``.
        started_ns / ended_ns: server timestamps of the first and the terminal record.
        steps_completed / steps_failed / records: counters.
        skipped: records that did not decode (ignored by the fold).
    """

    __slots__ = (
        "workflow",
        "run_id",
        "seq",
        "status",
        "state",
        "state_changed_seq",
        "start_event",
        "result",
        "error",
        "done",
        "events",
        "consumed",
        "started_ns",
        "ended_ns",
        "steps_completed",
        "steps_failed",
        "records",
        "skipped",
    )

    def __init__(self, workflow: str = "", run_id: str = "") -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.seq = 0
        self.status = PENDING
        self.state: dict[str, Any] = {}
        self.state_changed_seq = 0
        self.start_event: str | None = None
        self.result: RunCompleted | None = None
        self.error: StepFailed | RunFailed | None = None
        self.done: set[tuple[int, str]] = set()
        self.events: dict[str, list[tuple[int, str | None]]] = {}
        self.consumed: dict[str, dict[int, int]] = {}
        self.started_ns: int | None = None
        self.ended_ns: int | None = None
        self.steps_completed = 0
        self.steps_failed = 0
        self.records = 0
        self.skipped = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def apply(self, rec: Record) -> None:
        """Fold one record in. Records must come in increasing ``seq`` order."""
        self.seq = rec.seq
        self.records += 1
        if rec.error is not None:
            self.skipped += 1
            return
        if not self.workflow:
            self.workflow, self.run_id = rec.workflow, rec.run_id
        if rec.kind == "evt":
            if not self.terminal:
                self.events.setdefault(rec.type, []).append((rec.seq, rec.target))
            return
        if rec.kind != "sys":
            return
        body = rec.body
        if isinstance(body, RunStarted):
            if self.status == PENDING:
                self.status = RUNNING
                self.start_event = body.start_event
                self.started_ns = rec.time_ns
            return
        if self.terminal:
            # The first terminal record wins; anything a slower step committed later is history only.
            if isinstance(body, StepCompleted | StepFailed):
                self.done.add((body.trigger, body.step))
            return
        if isinstance(body, StepCompleted):
            self.done.add((body.trigger, body.step))
            self.steps_completed += 1
            if body.state:
                for path, value in body.state.items():
                    set_path(self.state, path, value)
                self.state_changed_seq = rec.seq
            if body.consumed:
                mine = self.consumed.setdefault(body.step, {})
                for ev_seq in body.consumed:
                    mine.setdefault(ev_seq, rec.seq)
        elif isinstance(body, StepFailed):
            self.done.add((body.trigger, body.step))
            self.steps_failed += 1
            self._end(FAILED, rec)
            self.error = body
        elif isinstance(body, RunCompleted):
            self._end(COMPLETED, rec)
            self.result = body
        elif isinstance(body, RunFailed):
            self._end(FAILED, rec)
            self.error = body
        elif isinstance(body, RunCancelled):
            self._end(CANCELLED, rec)

    def _end(self, status: str, rec: Record) -> None:
        self.status = status
        self.ended_ns = rec.time_ns

    def collect(
        self, step: str, expected: Sequence[str], trigger_seq: int
    ) -> list[int] | None:
        """Fan-in as of ``trigger_seq``: the event sequences a ``collect_events`` call completes.

        Replays, in sequence order, the events of the expected types addressed to ``step`` (not yet
        consumed as of ``trigger_seq``) as if each had been delivered one at a time, filling one
        collection after another. Returns the collection that the trigger itself completes, in the
        order of ``expected``; ``None`` when the trigger completes none. Because the answer depends
        only on the log prefix up to ``trigger_seq``, any process handling any trigger agrees on it.
        """
        need = Counter(expected)
        consumed = self.consumed.get(step, {})
        candidates: list[tuple[int, str]] = []
        for type_name in need:
            for seq, target in self.events.get(type_name, ()):
                if seq > trigger_seq:
                    break
                if target is not None and target != step:
                    continue
                at = consumed.get(seq)
                if at is not None and at <= trigger_seq:
                    continue
                candidates.append((seq, type_name))
        candidates.sort()
        queues: dict[str, deque[int]] = {t: deque() for t in need}
        for seq, type_name in candidates:
            queues[type_name].append(seq)
            if all(len(queues[t]) >= n for t, n in need.items()):
                group = [queues[t].popleft() for t in expected]
                if seq == trigger_seq:
                    return group
        return None


def fold(records: Iterable[Record], *, until_seq: int | None = None) -> RunState:
    """Fold records (in sequence order) into a ``RunState``; stop after ``until_seq`` if given."""
    st = RunState()
    for rec in records:
        if until_seq is not None and rec.seq > until_seq:
            break
        st.apply(rec)
    return st
