"""The fold: a run's state is ``fold(records)``, a pure function of its log.

No clock, no I/O, no randomness: every time comes from the records (the server's timestamps).
``RunState.apply`` is the reducer; ``fold`` applies it to a sequence. A step sees the state as of
its trigger's sequence (docs/architecture.md): ``state`` is kept as of ``seq``, and ``collect`` answers fan-in
questions as of any earlier sequence, which is what makes fan-in race-free across processes.
``compact`` drops what no later question needs, so that a snapshot of a long run stays small; a fold
loaded from one answers the rest as the whole fold would, or raises ``HistoryNeeded``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any, Final, NoReturn

from engine.model.records import (
    CommitMessage,
    OutMessage,
    ParentRef,
    Record,
    Resume,
    RolledBack,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunForked,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSuspended,
    is_one_message_commit,
)
from engine.state.ending import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, TERMINAL, ends_run
from engine.wire.headers import (
    H_COMMIT,
    H_RUN,
    H_STEP,
    H_TRIGGER,
    H_TYPE,
    commit_tag,
    parse_commit_tag,
)
from engine.wire.subjects import run_subject

__all__ = [
    "KEEP_EVENTS",
    "MISSING",
    "DroppedEvents",
    "HistoryNeeded",
    "HorizonDone",
    "PendingCommit",
    "RunState",
    "compact",
    "fold",
    "get_path",
    "set_path",
]


MISSING = object()  # the "no default given" of get_path and ctx.store.get (None is a value)
KEEP_EVENTS: Final = 256  # newest events whose details a compacted fold keeps whatever happened to them


def set_path(root: dict[str, Any], path: str, value: Any) -> None:
    """Set ``root["a"]["b"] = value`` for ``path="a.b"``, creating dicts on the way. The empty
    path stands for the whole state: ``value`` (a dict) replaces ``root``'s contents (a typed
    state's ``set_state``, ``clear``)."""
    if not path:
        root.clear()
        root.update(value)
        return
    *parents, leaf = path.split(".")
    node = root
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


def get_path(root: dict[str, Any], path: str, default: Any = MISSING) -> Any:
    """``root["a"]["b"]`` for ``path="a.b"``.

    Raises:
        KeyError: the path is absent and no default was given.
    """
    node: Any = root
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            if default is MISSING:
                raise KeyError(path)
            return default
        node = node[key]
    return node


class PendingCommit:
    """A commit whose first record is in the log and some of whose other messages are not (yet).

    Built by the fold from the first record's copy of the commit (``StepCompleted.messages``,
    ``RunStarted.messages``) and forgotten as soon as every message has been seen, so a run's state
    holds copies only of the commits still being appended (or interrupted by a crash).

    Attributes:
        key: the commit's idempotency key.
        head_seq: stream sequence of its first record.
        base: headers every message of the commit shares (``Jl-Run``, ``Jl-Step``, ``Jl-Trigger``).
        messages: the copy: message ``i`` (1-based) of the commit is ``messages[i - 1]``.
        seen: indices of the messages in the log so far (0 is the first record).
        execution: the id of the execution whose head was folded (``None`` in logs written
            before execution ids); only its messages count.
    """

    __slots__ = ("key", "head_seq", "base", "messages", "seen", "execution")

    def __init__(
        self,
        key: str,
        head_seq: int,
        base: dict[str, str],
        messages: list[CommitMessage],
        execution: str | None = None,
    ) -> None:
        self.key = key
        self.head_seq = head_seq
        self.base = base
        self.messages = messages
        self.seen = {0}
        self.execution = execution

    @property
    def size(self) -> int:
        """Messages in the whole commit, the first record included."""
        return 1 + len(self.messages)

    def missing(self, prefix: str, workflow: str, run_id: str) -> tuple[list[int], list[OutMessage]]:
        """The commit's messages not seen in the log, rebuilt from the copy exactly as they were
        first sent (subject, headers, payload): ``(indices, messages)``."""
        indices: list[int] = []
        out: list[OutMessage] = []
        for i, cm in enumerate(self.messages, 1):
            if i in self.seen:
                continue
            headers = {
                **self.base,
                H_TYPE: cm.type,
                **cm.headers,
                H_COMMIT: commit_tag(self.key, i, self.execution),
            }
            subject = run_subject(prefix, workflow, run_id, cm.kind, cm.type)  # type: ignore[arg-type]  # a commit message's kind is one of the subject kinds
            indices.append(i)
            out.append(OutMessage(subject, bytes(cm.data), headers))
        return indices, out


def _head_base(rec: Record) -> dict[str, str]:
    base = {H_RUN: rec.run_id}
    if rec.step is not None:
        base[H_STEP] = rec.step
    if rec.trigger is not None:
        base[H_TRIGGER] = str(rec.trigger)
    return base


class HistoryNeeded(BaseException):  # noqa: N818 - a signal, like Suspend, not an error
    """A run folded from a snapshot (a compacted fold) was asked for something from before the
    snapshot. The run cache's signal: the executor reloads the run from its whole log and tries
    again. A ``BaseException``, so that a step's ``except Exception`` does not swallow it.

    Attributes:
        run_id: the run to reload from its whole log.
    """

    def __init__(self, run_id: str, what: str) -> None:
        super().__init__(f"run {run_id}: {what} is older than its snapshot")
        self.run_id = run_id


def _history_needed(run_id: str, what: str) -> NoReturn:
    raise HistoryNeeded(run_id, what)


class DroppedEvents:
    """What a compacted fold remembers of the events of one type it dropped (see ``compact``).

    Attributes:
        untargeted: dropped events addressed to no step in particular.
        targeted: ``{step: dropped events addressed to it}``.
        consumed: ``{step: dropped events it consumed}`` (by ``collect_events``, at a sequence at
            or below the horizon). A step consumed every dropped event it could collect when this
            equals ``untargeted + targeted[step]``.
    """

    __slots__ = ("untargeted", "targeted", "consumed")

    def __init__(
        self,
        untargeted: int = 0,
        targeted: dict[str, int] | None = None,
        consumed: dict[str, int] | None = None,
    ) -> None:
        self.untargeted = untargeted
        self.targeted: dict[str, int] = targeted if targeted is not None else {}
        self.consumed: dict[str, int] = consumed if consumed is not None else {}

    def unconsumed_by(self, step: str) -> int:
        """Dropped events ``step`` could collect and did not consume."""
        return self.untargeted + self.targeted.get(step, 0) - self.consumed.get(step, 0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DroppedEvents):
            return NotImplemented
        return (self.untargeted, self.targeted, self.consumed) == (
            other.untargeted,
            other.targeted,
            other.consumed,
        )

    def __repr__(self) -> str:
        return f"DroppedEvents({self.untargeted}, {self.targeted}, {self.consumed})"


class HorizonDone(set[tuple[int, str]]):
    """``RunState.done`` of a compacted fold: the pairs kept, and a membership test that refuses
    (``HistoryNeeded``) to answer for a trigger at or below the horizon whose pairs were dropped."""

    __slots__ = ("horizon", "known", "run_id")

    def __init__(
        self, pairs: Iterable[tuple[int, str]], horizon: int, known: set[int], run_id: str
    ) -> None:
        super().__init__(pairs)
        self.horizon = horizon
        self.known = known  # triggers at or below the horizon whose pairs are all kept
        self.run_id = run_id

    def __contains__(self, key: object) -> bool:
        if set.__contains__(self, key):
            return True
        trigger = key[0]  # type: ignore[index]  # only (trigger, step) tuples are looked up
        if trigger <= self.horizon and trigger not in self.known:
            _history_needed(self.run_id, f"whether trigger {trigger} was handled")
        return False


class RunState:
    """Everything known about one run, as of record ``seq``.

    Attributes:
        status: ``pending`` (no RunStarted yet), ``running``, ``completed``, ``failed``, ``cancelled``.
        state: the user state (``ctx.store``), a JSON-like dict (a typed state's
            ``model_dump(mode="json")``; ``engine.runtime.context``).
        state_changed_seq: sequence of the last record that changed ``state`` (0 if none).
        result: the RunCompleted record, once completed.
        error: the StepFailed or RunFailed record, once failed.
        done: ``(trigger_seq, step)`` pairs already handled (completed or failed).
        events: per event type, the ``(seq, target)`` of every event appended.
        consumed: per step, ``{event_seq: seq_of_the_record_that_consumed_it}``.
        started_ns / ended_ns: server timestamps of the first and the terminal record.
        steps_completed / steps_failed / records: counters.
        skipped: records that did not decode (ignored by the fold).
        incomplete: commits whose first record is folded in and some of whose messages are not,
            by commit key (see ``PendingCommit``). A commit is appended message by message, so
            this is normally empty between commits; an entry that stays means the writer crashed
            part-way and the trigger's redelivery will complete it.
        orphans: sequences of messages another execution of a commit stored after the head that
            stands was folded, or without it (``engine.wire.commit``): not folded, and never run as a
            trigger.
        rollbacks: ``(to_seq, marker_seq)`` of every ``sys.RolledBack`` folded in: records in
            ``to_seq < seq < marker_seq`` do not count, nor do later records of a step whose
            trigger lies in such a range (a step that was running when the rollback came).
        epoch: how many rollbacks the run has had (commit keys after one get ``@<epoch>``).
        forking: the run is a fork whose copied prefix is not complete yet (``RunForked``).
        attempts: ``(trigger_seq, step)`` -> attempts that failed so far (``StepRetrying``,
            ``StepFailed``); the attempt running now is ``attempt_of(trigger, step)``.
        retrying: ``(trigger_seq, step)`` -> the ``StepRetrying`` whose next attempt is pending.
        retried_from: ``(trigger_seq, step)`` -> failed attempts before the last retry-from-failure
            (``Resume(reason="manual")``); a retry policy counts attempts after it.
        first_failed_ns: ``(trigger_seq, step)`` -> server time of its first ``StepRetrying``.
        horizon: 0 for a fold of the whole log. For a fold loaded from a compacted snapshot
            (``compact``), the sequence at or below which details were dropped: ``done`` then holds
            the pairs of the triggers after it and of those it still needs, ``events`` the events
            after it and those a step that collects their type has not consumed, and a question
            the dropped details would answer raises ``HistoryNeeded`` instead (the run
            cache then folds the whole log).
        dropped: per event type, what was dropped of its events (``DroppedEvents``); empty when
            ``horizon`` is 0.
        base_seq: sequence of the snapshot the fold was loaded from (0: folded from the first
            record). Such a fold does not hold the records before it, so a rollback raises
            ``HistoryNeeded``.
    """

    __slots__ = (
        "parent",
        "timeout_at_ns",
        "attempts",
        "retrying",
        "retried_from",
        "first_failed_ns",
        "waits",
        "resolved",
        "claimed",
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
        "collections",
        "_memos",
        "started_ns",
        "ended_ns",
        "steps_completed",
        "steps_failed",
        "records",
        "skipped",
        "incomplete",
        "orphans",
        "rollbacks",
        "epoch",
        "forking",
        "_log",
        "horizon",
        "dropped",
        "base_seq",
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
        self.collections: dict[str, list[tuple[int, ...]]] = {}
        self._memos: dict[tuple[str, tuple[str, ...]], _CollectMemo | None] = {}
        self.started_ns: int | None = None
        self.ended_ns: int | None = None
        self.steps_completed = 0
        self.steps_failed = 0
        self.records = 0
        self.skipped = 0
        self.incomplete: dict[str, PendingCommit] = {}
        self.orphans: set[int] = set()
        # (trigger, step, wait id) -> (seq of the StepSuspended, the record), while unresolved or
        # until the step completes; first resolution of each wait; events given to a wait
        self.waits: dict[tuple[int, str, str], tuple[int, StepSuspended]] = {}
        self.resolved: dict[tuple[int, str, str], Resume] = {}
        self.claimed: set[int] = set()
        self.rollbacks: list[tuple[int, int]] = []
        self.epoch = 0
        self.forking = False
        # the records that count, kept (as references) so that a rollback can fold them again
        self._log: list[Record] = []
        self.parent: ParentRef | None = None  # the parent step's wait, for a child run
        self.timeout_at_ns = 0  # when the run's timeout schedule fires (RunStarted), 0: none
        self.attempts: dict[tuple[int, str], int] = {}
        self.retrying: dict[tuple[int, str], StepRetrying] = {}
        self.retried_from: dict[tuple[int, str], int] = {}
        self.first_failed_ns: dict[tuple[int, str], int] = {}
        self.horizon = 0
        self.dropped: dict[str, DroppedEvents] = {}
        self.base_seq = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def excluded(self, seq: int) -> bool:
        """Whether sequence ``seq`` lies in a range a rollback undid."""
        return any(n < seq < m for n, m in self.rollbacks)
    def attempt_of(self, trigger: int, step: str) -> int:
        """The 1-based attempt of ``step`` on ``trigger`` that runs next (or ran last, once done).

        Raises:
            HistoryNeeded: a compacted fold dropped what it knew of ``trigger`` (``horizon``).
        """
        n = self.attempts.get((trigger, step))
        if n is not None:
            return n + 1
        if self.horizon and trigger <= self.horizon and trigger not in self.done.known:  # type: ignore[attr-defined]  # past a horizon, done is a HorizonDone, which has known
            _history_needed(self.run_id, f"the attempts on trigger {trigger}")
        return 1

    def _reopen(self, r: Resume) -> None:
        # retry-from-failure: the failed step runs again and the run is running again
        err = self.error
        if self.status != FAILED or not isinstance(err, StepFailed):
            return
        if (err.trigger, err.step) != (r.trigger, r.step):
            return
        self.status = RUNNING
        self.error = None
        self.ended_ns = None
        self.done.discard((r.trigger, r.step))
        self.retried_from[(r.trigger, r.step)] = self.attempts.get((r.trigger, r.step), 0)

    def apply(self, rec: Record) -> None:
        """Fold one record in. Records must come in increasing ``seq`` order.

        A ``sys.RolledBack`` record refolds the records that still count (the fold cannot undo).
        """
        if rec.kind == "sys" and isinstance(rec.body, RolledBack):
            self._roll_back(rec)
            return
        self.seq = rec.seq
        self.records += 1
        self._log.append(rec)
        if self.rollbacks and rec.trigger is not None and self.excluded(rec.trigger):
            return
        if rec.commit is not None and not self._track_commit(rec):
            self.orphans.add(rec.seq)
            return
        if rec.error is not None:
            self.skipped += 1
            return
        if not self.workflow:
            self.workflow, self.run_id = rec.workflow, rec.run_id
        if rec.kind == "evt":
            if rec.trigger is not None and rec.step is not None and is_one_message_commit("evt", rec.type, rec.commit, rec.step):
                # a one-message step commit: the event is its head, and stands for the
                # StepCompleted that would have come first (engine.wire.commit)
                self._completed(rec.trigger, rec.step)
            if not self.terminal:
                self.events.setdefault(rec.type, []).append((rec.seq, rec.target))
            return
        if rec.kind == "cmd":
            if isinstance(rec.body, Resume) and rec.body.reason == "manual":
                self._reopen(rec.body)
            r = rec.body
            if isinstance(r, Resume) and r.wait is not None and not self.terminal:
                self.resolved.setdefault((r.trigger, r.step, r.wait), r)
                if r.event is not None:
                    self.claimed.add(r.event.seq)
            return
        if rec.kind != "sys":
            return
        body = rec.body
        if isinstance(body, RunStarted):
            if self.status == PENDING:
                self.status = RUNNING
                self.start_event = body.start_event
                self.started_ns = rec.time_ns
                self.forking = bool(body.forked_from)
                self.parent = body.parent
                self.timeout_at_ns = body.timeout_at_ns
                if body.initial_state:
                    self.state = dict(body.initial_state)
                    self.state_changed_seq = rec.seq
            return
        if isinstance(body, RunForked):
            self.forking = False
            return
        if isinstance(body, RunCompleted) and is_one_message_commit("sys", rec.type, rec.commit, rec.step):
            # a one-message step commit that ends the run: also the step's StepCompleted
            self._completed(body.trigger, body.step)
        if self.terminal:
            # The first terminal record wins; anything a slower step committed later is history only.
            if isinstance(body, StepCompleted | StepFailed):
                self.done.add((body.trigger, body.step))
            return
        if isinstance(body, StepSuspended):
            if (body.trigger, body.step) not in self.done:
                self.waits.setdefault((body.trigger, body.step, body.wait), (rec.seq, body))
            return
        if isinstance(body, StepRetrying):
            self.attempts[(body.trigger, body.step)] = body.attempt
            self.retrying[(body.trigger, body.step)] = body
            self.first_failed_ns.setdefault((body.trigger, body.step), rec.time_ns)
            return
        if isinstance(body, StepFailed) and not ends_run(rec.type, body.handled_by):
            self.attempts[(body.trigger, body.step)] = body.attempt
            self.retrying.pop((body.trigger, body.step), None)
            self.done.add((body.trigger, body.step))
            self.steps_failed += 1
            return
        if isinstance(body, StepCompleted):
            self._completed(body.trigger, body.step)
            if body.state:
                for path, value in body.state.items():
                    set_path(self.state, path, value)
                self.state_changed_seq = rec.seq
            if body.consumed:
                mine = self.consumed.setdefault(body.step, {})
                for ev_seq in body.consumed:
                    mine.setdefault(ev_seq, rec.seq)
                self.collections.setdefault(body.step, []).append(tuple(body.consumed))
        elif isinstance(body, StepFailed):
            self.done.add((body.trigger, body.step))
            self.attempts[(body.trigger, body.step)] = body.attempt
            self.retrying.pop((body.trigger, body.step), None)
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

    def _roll_back(self, marker: Record) -> None:
        if self.base_seq:
            # a rollback refolds the records before it, which a fold from a snapshot does not hold
            _history_needed(self.run_id, "a rollback")
        to_seq = marker.body.to_seq
        fresh = RunState(self.workflow, self.run_id)
        fresh.rollbacks = [*self.rollbacks, (to_seq, marker.seq)]
        for rec in self._log:
            if rec.seq > to_seq:
                break
            if rec.kind == "sys" and isinstance(rec.body, RolledBack):
                fresh._log.append(rec)  # an earlier marker: its range is already left out
            else:
                fresh.apply(rec)
        records = self.records + 1
        for name in RunState.__slots__:
            setattr(self, name, getattr(fresh, name))
        self._log.append(marker)
        self.seq = marker.seq
        self.records = records
        self.epoch = len(self.rollbacks)

    def _track_commit(self, rec: Record) -> bool:
        """Track a message of a multi-message commit; whether it counts (``False``: an orphan,
        written by an execution whose head did not stand)."""
        tag = parse_commit_tag(rec.commit)  # type: ignore[arg-type]  # called only for a record with a commit tag
        if tag is None:
            return True
        key, index, execution = tag
        pending = self.incomplete.get(key)
        if index == 0:
            if pending is not None:  # a second head, stored after the log's duplicate window
                return execution is None or execution == pending.execution
            # (only an engine record carries a copy: an event's own ``messages`` field is not one)
            copy = getattr(rec.body, "messages", None) if rec.kind == "sys" else None
            if copy:
                self.incomplete[key] = PendingCommit(key, rec.seq, _head_base(rec), copy, execution)
            return True
        if pending is None or pending.execution != execution:
            # no head of this execution is open: the commit of another execution stands (or this
            # one's head was rejected); a log without execution ids keeps the old rule
            return execution is None
        if index >= pending.size or index in pending.seen:
            return execution is None
        pending.seen.add(index)
        if len(pending.seen) == pending.size:
            del self.incomplete[key]
        return True

    def _completed(self, trigger: int, step: str) -> None:
        self.done.add((trigger, step))
        if self.terminal:  # the first terminal record wins; a later completion is history only
            return
        self.retrying.pop((trigger, step), None)
        self._drop_waits(trigger, step)
        self.steps_completed += 1

    def _drop_waits(self, trigger: int, step: str) -> None:
        if not self.waits:
            return
        for key in [k for k in self.waits if k[0] == trigger and k[1] == step]:
            del self.waits[key]
            self.resolved.pop(key, None)

    def open_event_waits(self) -> list[tuple[int, StepSuspended]]:
        """Unresolved ``wait_for_event`` waits, in the order they were recorded:
        ``(seq of the StepSuspended, record)``."""
        return sorted(
            (v for k, v in self.waits.items() if v[1].kind == "event" and k not in self.resolved),
            key=lambda v: v[0],
        )

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

        Cost: amortised O(1) per event while a step collects with one ``expected`` list (the
        partition is memoised and checked against the consumption records); a step that changes
        its ``expected`` list falls back to a scan of the buffered events.

        Raises:
            HistoryNeeded: a compacted fold dropped events the answer may depend on (``horizon``).
        """
        if self.dropped:
            self._check_dropped(step, expected, trigger_seq)
        key = (step, tuple(expected))
        memo = self._memos.get(key, _UNSET)
        if memo is _UNSET:
            memo = self._memos[key] = _CollectMemo(step, key[1])
        if memo is not None:
            if memo.check(self):
                return memo.answer(self, trigger_seq)
            self._memos[key] = None  # the log was collected differently; stop trusting the memo
        return self.collect_scan(step, expected, trigger_seq)

    def _check_dropped(self, step: str, expected: Sequence[str], trigger_seq: int) -> None:
        # Dropped events count for a fan-in as of trigger_seq unless the step consumed them by
        # then; compact() only drops an event a step consumed at or below the horizon.
        for type_name in set(expected):
            d = self.dropped.get(type_name)
            if d is None or not (d.untargeted or d.targeted.get(step)):
                continue
            if trigger_seq <= self.horizon or d.unconsumed_by(step) > 0:
                _history_needed(self.run_id, f"events of type {type_name} a fan-in may collect")

    def collect_scan(
        self, step: str, expected: Sequence[str], trigger_seq: int
    ) -> list[int] | None:
        """``collect`` by scanning every buffered event (O(buffered) per call)."""
        if self.dropped:
            self._check_dropped(step, expected, trigger_seq)
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


_UNSET: Any = object()


class _CollectMemo:
    """The greedy partition of one step's events into collections of one ``expected`` list,
    extended as events arrive. Valid while every consumption record of the step took exactly one
    of its groups (then removing consumed events leaves the partition of the rest unchanged)."""

    __slots__ = ("step", "expected", "need", "pos", "queues", "upto", "groups", "checked")

    def __init__(self, step: str, expected: tuple[str, ...]) -> None:
        self.step = step
        self.expected = expected
        self.need = Counter(expected)
        self.pos = dict.fromkeys(self.need, 0)
        self.queues: dict[str, deque[int]] = {t: deque() for t in self.need}
        self.upto = 0
        self.groups: dict[int, list[int]] = {}
        self.checked = 0

    def extend(self, st: RunState, until: int) -> None:
        if until <= self.upto:
            return
        lists = {t: st.events.get(t, []) for t in self.need}
        while True:
            best_t, best = None, None
            for t, lst in lists.items():
                i = self.pos[t]
                if i < len(lst) and lst[i][0] <= until and (best is None or lst[i][0] < best):
                    best_t, best = t, lst[i][0]
            if best_t is None or best is None:
                break
            target = lists[best_t][self.pos[best_t]][1]
            self.pos[best_t] += 1
            if target is not None and target != self.step:
                continue
            self.queues[best_t].append(best)
            if all(len(self.queues[t]) >= n for t, n in self.need.items()):
                self.groups[best] = [self.queues[t].popleft() for t in self.expected]
        self.upto = until

    def check(self, st: RunState) -> bool:
        done = st.collections.get(self.step, ())
        while self.checked < len(done):
            taken = done[self.checked]
            last = max(taken)
            self.extend(st, last)
            group = self.groups.get(last)
            if group is None or sorted(group) != sorted(taken):
                return False
            self.checked += 1
        return True

    def answer(self, st: RunState, trigger_seq: int) -> list[int] | None:
        self.extend(st, trigger_seq)
        group = self.groups.get(trigger_seq)
        return list(group) if group is not None else None


def fold(records: Iterable[Record], *, until_seq: int | None = None) -> RunState:
    """Fold records (in sequence order) into a ``RunState``; stop after ``until_seq`` if given."""
    st = RunState()
    for rec in records:
        if until_seq is not None and rec.seq > until_seq:
            break
        st.apply(rec)
    return st


def compact(st: RunState, *, keep_events: int = KEEP_EVENTS) -> RunState:
    """``st`` without the details no question after its horizon needs, so that the snapshot of a
    long run is about as small as that of a short one (``engine.state.snapshots``).

    The horizon ``H`` is the sequence of the ``keep_events + 1``-th newest event (default 256;
    never lower than ``st.horizon``; no compaction while the run has fewer events). Dropped:

    - an event at or below ``H``, unless a step known to collect its type (one that consumed an
      event of that type) and to which it is addressed had not consumed it by ``H``; what was
      dropped is counted in ``dropped``, so that a fan-in that could still collect it raises;
    - everything keyed by a trigger at or below ``H`` (``done`` pairs, ``attempts``,
      ``retried_from``, ``first_failed_ns``, ``resolved``) unless the trigger is open (a wait,
      a pending retry, an incomplete commit, the failure that ended the run, or a step not done
      that failed or was resumed on it) or its event is kept;
    - ``consumed``, ``collections`` and ``claimed`` entries of dropped events.

    Every answer of the result about sequences after ``H`` is the answer of ``st``; about the
    kept triggers at or below ``H`` too; about the others it raises ``HistoryNeeded``.

    Args:
        st: the fold; read, not changed.
        keep_events: newest events kept whatever happened to them (≥ 0).

    Returns:
        a new ``RunState`` sharing the unchanged parts (user state, waits, commits) with ``st``,
        meant to be serialised rather than folded further; ``st`` itself when nothing is dropped.
    """
    tails = sorted(seq for lst in st.events.values() for seq, _ in lst[-(keep_events + 1) :])
    if len(tails) <= keep_events or tails[-(keep_events + 1)] <= st.horizon:
        return st
    h = tails[-(keep_events + 1)]
    done = st.done
    old_known: set[int] | None = getattr(done, "known", None) if st.horizon else None

    # steps known to collect each type: they consumed one of its events, now or before
    collectors: dict[str, set[str]] = {
        t: {s for s, n in d.consumed.items() if n} for t, d in st.dropped.items()
    }
    if st.consumed:
        wanted = {e for mine in st.consumed.values() for e in mine}
        type_of = {seq: t for t, lst in st.events.items() for seq, _ in lst if seq in wanted}
        for step, mine in st.consumed.items():
            for e in mine:
                t = type_of.get(e)
                if t is not None:
                    collectors.setdefault(t, set()).add(step)

    dropped = {
        t: DroppedEvents(d.untargeted, dict(d.targeted), dict(d.consumed)) for t, d in st.dropped.items()
    }
    events: dict[str, list[tuple[int, str | None]]] = {}
    kept_old: set[int] = set()  # events at or below the horizon that are kept
    for t, lst in st.events.items():
        cut = bisect_right(lst, h, key=itemgetter(0))
        if not cut:
            events[t] = list(lst)
            continue
        d = dropped.get(t)
        if d is None:
            d = dropped[t] = DroppedEvents()
        takers_of = collectors.get(t)
        keep: list[tuple[int, str | None]] = []
        if not takers_of:  # nobody collects the type: every old event goes (the usual case)
            for target, n in Counter(target for _, target in lst[:cut]).items():
                if target is None:
                    d.untargeted += n
                else:
                    d.targeted[target] = d.targeted.get(target, 0) + n
            if cut < len(lst):
                events[t] = lst[cut:]
            continue
        for e, target in lst[:cut]:
            if takers_of:
                takers = [s for s in takers_of if target is None or target == s]
                at = [st.consumed.get(s, {}).get(e) for s in takers]
                if any(c is None or c > h for c in at):
                    keep.append((e, target))
                    kept_old.add(e)
                    continue
                for s in takers:
                    d.consumed[s] = d.consumed.get(s, 0) + 1
            if target is None:
                d.untargeted += 1
            else:
                d.targeted[target] = d.targeted.get(target, 0) + 1
        keep.extend(lst[cut:])
        if keep:
            events[t] = keep

    # triggers at or below the horizon whose details stay
    keep_trigger = set(kept_old)
    keep_trigger.update(k[0] for k in st.waits)
    keep_trigger.update(k[0] for k in st.retrying)
    for p in st.incomplete.values():
        trig = p.base.get(H_TRIGGER, "")
        if trig.isdigit():
            keep_trigger.add(int(trig))
    if isinstance(st.error, StepFailed):
        keep_trigger.add(st.error.trigger)
    for table in (st.attempts, st.retried_from, st.first_failed_ns, st.resolved):
        keep_trigger.update(k[0] for k in table if not set.__contains__(done, (k[0], k[1])))

    def exact(trigger: int) -> bool:  # st itself knew everything about it
        return not st.horizon or trigger > st.horizon or trigger in (old_known or ())

    known = {t for t in keep_trigger if t <= h and exact(t)}
    out = RunState(st.workflow, st.run_id)
    for name in RunState.__slots__:
        setattr(out, name, getattr(st, name))
    out.horizon = h
    out.done = HorizonDone([p for p in done if p[0] > h or p[0] in keep_trigger], h, known, st.run_id)
    out.events = events
    out.dropped = {t: d for t, d in dropped.items() if d.untargeted or d.targeted}
    out.consumed = {}
    for step, mine in st.consumed.items():
        left = {e: c for e, c in mine.items() if e > h or e in kept_old}
        if left:
            out.consumed[step] = left
    out.collections = {}
    for step, groups in st.collections.items():
        left_groups = [g for g in groups if any(e > h or e in kept_old for e in g)]
        if left_groups:
            out.collections[step] = left_groups
    out.claimed = {e for e in st.claimed if e > h or e in kept_old}
    out.attempts = {k: v for k, v in st.attempts.items() if k[0] > h or k[0] in keep_trigger}
    out.retried_from = {k: v for k, v in st.retried_from.items() if k[0] > h or k[0] in keep_trigger}
    out.first_failed_ns = {k: v for k, v in st.first_failed_ns.items() if k[0] > h or k[0] in keep_trigger}
    out.resolved = {k: v for k, v in st.resolved.items() if k[0] > h or k[0] in keep_trigger}
    out._memos = {}
    out._log = []
    return out
