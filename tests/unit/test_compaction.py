"""Compacted snapshots (engine.state.fold.compact): a fold loaded from one and rolled forward answers
every question as the fold of the whole log does, or raises HistoryNeeded, and only about what
lies at or below its horizon."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from engine import fold
from engine.model.records import (
    Record,
    Resume,
    ResumeEvent,
    RolledBack,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSuspended,
)
from engine.state.fold import KEEP_EVENTS, HistoryNeeded, RunState, compact
from engine.state.snapshots import decode_snapshot, encode_snapshot, snapshot_seq

# step -> (accepted types, the expected list it collects with, or None: it does not collect)
STEPS: dict[str, tuple[tuple[str, ...], list[str] | None]] = {
    "a": (("A",), None),
    "pair": (("A",), ["A", "A"]),
    "join": (("B", "C"), ["B", "C"]),
    "c": (("C",), None),
}
EXPECTED = [["A"], ["A", "A"], ["B", "C"], ["C"], ["B"], ["A", "B"]]


class Run:
    """Appends plausible records of one run (as workers would) and keeps its fold."""

    def __init__(self, rng: random.Random, rollback_until: int = 0) -> None:
        self.rng = rng
        self.rollback_until = rollback_until  # rollbacks only while the run has fewer records
        self.seq = 0
        self.records: list[Record] = []
        self.live = RunState()
        self.retrying: set[tuple[int, str]] = set()
        self.waiting: dict[tuple[int, str], int] = {}  # (trigger, step) -> times it waited
        self.add("sys", "RunStarted", RunStarted(workflow="wf", run_id="r1", start_event="StartEvent"))
        self.add("evt", "StartEvent", {"n": 0})

    def add(self, kind: str, type_name: str, body: Any, **kw: Any) -> int:
        # sequences skip numbers, as records of other runs share the stream
        self.seq += self.rng.choice((1, 1, 2, 5))
        rec = Record(self.seq, kind, type_name, "wf", "r1", self.seq * 1000, body, **kw)
        self.records.append(rec)
        self.live.apply(rec)
        return self.seq

    def pending(self) -> list[tuple[int, str]]:
        st = self.live
        out = []
        for step, (accepts, _) in STEPS.items():
            for type_name in accepts:
                for seq, target in st.events.get(type_name, ()):
                    if target in (None, step) and (seq, step) not in st.done:
                        out.append((seq, step))
        return out

    def step(self) -> None:
        rng, st = self.rng, self.live
        roll = rng.random()
        if roll < 0.4 or not self.pending():
            target = rng.choice([None] * 8 + list(STEPS))
            self.add("evt", rng.choice("AABC"), {"n": self.seq}, target=target)
            return
        trigger, step = rng.choice(self.pending())
        key = (trigger, step)
        if roll < 0.47 and key not in self.retrying:
            self.retrying.add(key)
            attempt = st.attempt_of(trigger, step)
            self.add("sys", "StepRetrying", StepRetrying(step=step, trigger=trigger, attempt=attempt, error_type="E", message="m"), trigger=trigger, step=step)
            return
        if roll < 0.52 and self.waiting.get(key, 0) < 2:
            n = self.waiting[key] = self.waiting.get(key, 0) + 1
            wait = StepSuspended(step=step, trigger=trigger, wait=f"w{n}", kind="event", event_type="B")
            self.add("sys", "StepSuspended", wait, trigger=trigger, step=step)
            free = [s for s, _ in st.events.get("B", ()) if s > trigger and s not in st.claimed]
            if free and rng.random() < 0.7:
                ev = ResumeEvent(type="B", seq=free[0])
                resume = Resume(step=step, trigger=trigger, reason="event", wait=f"w{n}", event=ev)
                self.add("cmd", step, resume, trigger=trigger, step=step)
            return
        if roll < 0.55:
            body: Any = StepFailed(step=step, trigger=trigger, error_type="E", message="m", attempt=st.attempt_of(trigger, step), handled_by="h")
            self.add("sys", "StepFailed", body, trigger=trigger, step=step)
            return
        if roll < 0.57 and 10 < len(self.records) < self.rollback_until:
            counted = [r.seq for r in self.records if not st.excluded(r.seq) and r.seq > 2]
            to_seq = rng.choice(counted[len(counted) // 2 :])
            self.add("sys", "RolledBack", RolledBack(to_seq=to_seq, epoch=st.epoch + 1))
            return
        expected = STEPS[step][1]
        consumed: list[int] = []
        if expected is not None:
            consumed = st.collect(step, expected, trigger) or []
        if rng.random() < 0.02:  # a collection taken differently (the memo is then not trusted)
            consumed = [s for s, _ in st.events.get("A", ())][-1:]
        done = StepCompleted(step=step, trigger=trigger, attempt=st.attempt_of(trigger, step), consumed=consumed, state={"last": trigger, f"by.{step}": trigger})
        self.add("sys", "StepCompleted", done, trigger=trigger, step=step)
        if rng.random() < 0.03:  # a slower duplicate worker's late commit
            self.add("sys", "StepCompleted", done, trigger=trigger, step=step)


def handled(st: RunState, q: int, step: str) -> bool:
    return (q, step) in st.done


def attempt(st: RunState, q: int, step: str) -> int:
    return st.attempt_of(q, step)


def collected(st: RunState, q: int, step: str, expected: list[str]) -> Any:
    return st.collect(step, expected, q)


def scanned(st: RunState, q: int, step: str, expected: list[str]) -> Any:
    return st.collect_scan(step, expected, q)


def ask(full: RunState, comp: RunState, question: Callable[..., Any], *args: Any, may_raise: bool) -> bool:
    """Whether the compacted fold raised; otherwise its answer must be the full fold's."""
    want = question(full, *args)
    try:
        got = question(comp, *args)
    except HistoryNeeded:
        assert may_raise, f"raised about something after the horizon: {question.__name__}{args}"
        return True
    assert got == want, (question.__name__, args)
    return False


def load(st: RunState, keep: int) -> RunState:
    back = decode_snapshot(encode_snapshot(st, keep_events=keep))
    assert back is not None
    return back


def roll_forward(back: RunState, records: list[Record]) -> bool:
    """Apply ``records``; False when the compacted fold asked for history (a rollback, or a wait
    on a trigger whose details it dropped), which the run cache answers by a full reload."""
    try:
        for rec in records:
            back.apply(rec)
    except HistoryNeeded:
        return False
    return True


def roll_forward_reloading(comp: RunState, records: list[Record], start: int, keep: int) -> tuple[RunState, int]:
    """Apply ``records[start:]`` to ``comp`` as the run cache does: where the compacted fold asks
    for history, check that it had a reason to (a rollback, or a record about a trigger at or below
    its horizon), then reload (the fold of the whole log so far, compacted again) and go on.
    Returns the fold and how many reloads it took."""
    reloads = 0
    for i in range(start, len(records)):
        rec = records[i]
        try:
            comp.apply(rec)
        except HistoryNeeded:
            assert rec.type == "RolledBack" or (rec.trigger is not None and rec.trigger <= comp.horizon), (
                f"asked for history about {rec.type} (trigger {rec.trigger}) above the horizon {comp.horizon}"
            )
            comp = load(fold(records[: i + 1]), keep)
            reloads += 1
    return comp, reloads


def compare(full: RunState, comp: RunState) -> tuple[int, int]:
    """Every question, both folds; returns (questions, raised)."""
    for name in (
        "seq", "status", "state", "state_changed_seq", "start_event", "result", "error", "waits",
        "retrying", "epoch", "rollbacks", "steps_completed", "steps_failed", "records", "skipped",
        "forking", "parent",
    ):  # fmt: skip
        assert getattr(comp, name) == getattr(full, name), name
    assert comp.open_event_waits() == full.open_event_waits()
    assert comp.incomplete.keys() == full.incomplete.keys()
    h = comp.horizon
    for type_name, lst in full.events.items():
        assert [e for e in comp.events.get(type_name, ()) if e[0] > h] == [e for e in lst if e[0] > h]
    seqs = sorted({s for lst in full.events.values() for s, _ in lst} | {t for t, _ in full.done})
    asked = raised = 0
    for q in seqs:
        for step in STEPS:
            asked += 2
            raised += ask(full, comp, handled, q, step, may_raise=q <= h)
            raised += ask(full, comp, attempt, q, step, may_raise=q <= h)
            key = (q, step)
            if q > h or q in getattr(comp.done, "known", ()):
                for table in ("retrying", "retried_from", "first_failed_ns", "attempts"):
                    assert getattr(comp, table).get(key) == getattr(full, table).get(key), table
    for q in seqs:
        for step in STEPS:
            for expected in EXPECTED:
                d = [comp.dropped[t] for t in expected if t in comp.dropped]
                may = any(x.unconsumed_by(step) > 0 for x in d) or (q <= h and any(x.untargeted or x.targeted.get(step) for x in d))
                asked += 2
                raised += ask(full, comp, collected, q, step, expected, may_raise=may)
                raised += ask(full, comp, scanned, q, step, expected, may_raise=may)
    return asked, raised


@pytest.mark.parametrize("seed", range(60))
def test_compacted_fold_answers_as_the_full_fold(seed: int) -> None:
    """Every seed compares two compacted folds with the full fold: one loaded at the first cut and
    rolled forward to the end, one snapshotted again from it at the second cut. Where one asks for
    history it is reloaded (as the run cache does) and the comparison still runs."""
    rng = random.Random(seed)
    run = Run(rng, rollback_until=100)
    for _ in range(rng.randint(150, 300)):
        run.step()
    records = run.records
    full = fold(records)
    keep = rng.choice([0, 1, 3, 8, 20])
    cuts = sorted(rng.sample(range(len(records) // 2, len(records)), 2))
    # load from a snapshot at the first cut, roll forward, snapshot again at the second cut
    back, _ = roll_forward_reloading(load(fold(records[: cuts[0]]), keep), records[: cuts[1]], cuts[0], keep)
    again = load(back, keep)
    assert again.horizon >= back.horizon
    compared = 0
    for comp in (back, again):
        comp, _ = roll_forward_reloading(comp, records, cuts[1], keep)
        compare(full, comp)
        compared += 1
    assert compared == 2


def test_most_seeds_roll_forward_without_a_reload() -> None:
    """The seeds above mostly compare folds that were never reloaded (a reload compares a fold of
    the whole log, compacted once, which says less about rolling forward)."""
    clean = 0
    for seed in range(60):
        rng = random.Random(seed)
        run = Run(rng, rollback_until=100)
        for _ in range(rng.randint(150, 300)):
            run.step()
        records = run.records
        keep = rng.choice([0, 1, 3, 8, 20])
        cuts = sorted(rng.sample(range(len(records) // 2, len(records)), 2))
        back, first = roll_forward_reloading(load(fold(records[: cuts[0]]), keep), records[: cuts[1]], cuts[0], keep)
        _, second = roll_forward_reloading(load(back, keep), records, cuts[1], keep)
        clean += first == second == 0
    assert clean >= 45, clean


def test_questions_after_the_horizon_never_raise_and_compaction_happens() -> None:
    """Over many runs, compaction drops something in most, and raises only at or below it."""
    compacted = total_raised = total = 0
    for seed in range(40):
        rng = random.Random(1000 + seed)
        run = Run(rng)
        for _ in range(200):
            run.step()
        records = [r for r in run.records if r.type != "RolledBack"]  # keep every cut loadable
        cut = len(records) * 3 // 4
        back = load(fold(records[:cut]), 5)
        compacted += back.horizon > 0
        back, _ = roll_forward_reloading(back, records, cut, 5)
        asked, raised = compare(fold(records), back)
        total += asked
        total_raised += raised
    assert compacted >= 35
    assert 0 < total_raised < total  # compare() checked that none was about a later sequence


def _synthetic(n: int) -> list[Record]:
    """Benchmark (d)'s run: a start commit, then StepCompleted + the event it emitted."""
    recs = [
        Record(1, "sys", "RunStarted", "wf", "r", 1, RunStarted(workflow="wf", run_id="r", start_event="StartEvent")),
        Record(2, "evt", "StartEvent", "wf", "r", 2, {}),
    ]
    i = 0
    while len(recs) < n:
        s = len(recs) + 1
        recs.append(Record(s, "sys", "StepCompleted", "wf", "r", s, StepCompleted(step="tick", trigger=s - 1, state={"i": i}), step="tick", trigger=s - 1))
        recs.append(Record(s + 1, "evt", "BenchTick", "wf", "r", s + 1, {"i": i}))
        i += 1
    return recs


def test_snapshot_size_does_not_grow_with_the_run() -> None:
    small = encode_snapshot(fold(_synthetic(1_000)))
    large = encode_snapshot(fold(_synthetic(100_000)))
    assert len(large) <= len(small) * 1.2
    back = decode_snapshot(large)
    assert back is not None and back.horizon > 0
    assert sum(len(v) for v in back.events.values()) <= KEEP_EVENTS
    assert back.state == {"i": 49_998} and back.steps_completed == 49_999


def test_a_compacted_fold_leaves_the_original_alone_and_is_idempotent() -> None:
    st = fold(_synthetic(2_000))
    done, events = set(st.done), {k: list(v) for k, v in st.events.items()}
    once = compact(st, keep_events=10)
    assert st.done == done and st.events == events and st.horizon == 0
    assert compact(once, keep_events=10) is once
    assert max(st.done) in once.done  # the newest trigger is kept
    with pytest.raises(HistoryNeeded):
        _ = (3, "tick") in once.done  # an old one was dropped: only the whole log knows


def test_rollback_on_a_fold_from_a_snapshot_asks_for_history() -> None:
    records = _synthetic(100)
    back = load(fold(records[:50]), KEEP_EVENTS)
    assert back.base_seq == 50 and back.horizon == 0
    marker = Record(101, "sys", "RolledBack", "wf", "r", 101, RolledBack(to_seq=60))
    assert roll_forward(back, records[50:])
    with pytest.raises(HistoryNeeded):
        back.apply(marker)


def test_a_version_1_snapshot_is_ignored_not_misread() -> None:
    v2 = encode_snapshot(fold(_synthetic(100)))
    v1 = zlib.compress(msgspec.msgpack.encode({"v": 1, "seq": 5})) + v2[len(v2) // 2 :]
    assert decode_snapshot(v1) is None and snapshot_seq(v1) is None
