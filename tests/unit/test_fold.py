"""The fold: a pure function of the records, with fan-in answered as of any trigger."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from engine import fold
from engine.model.records import (
    Record,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    StepCompleted,
    StepFailed,
)
from engine.state.fold import RunState


class Log:
    """Builds records with increasing sequences and timestamps."""

    def __init__(self) -> None:
        self.seq = itertools.count(1)
        self.records: list[Record] = []

    def sys(self, body: Any) -> int:
        s = next(self.seq)
        self.records.append(Record(s, "sys", type(body).__name__, "wf", "r1", s * 1000, body))
        return s

    def evt(self, type_name: str, target: str | None = None, error: str | None = None) -> int:
        s = next(self.seq)
        body = None if error else {"n": s}
        self.records.append(Record(s, "evt", type_name, "wf", "r1", s * 1000, body, target=target, error=error))
        return s


def started() -> Log:
    log = Log()
    log.sys(RunStarted(workflow="wf", run_id="r1", start_event="StartEvent"))
    log.evt("StartEvent")
    return log


def test_started_run_is_running() -> None:
    st = fold(started().records)
    assert st.status == "running"
    assert st.start_event == "StartEvent"
    assert st.started_ns == 1000
    assert st.seq == 2


def test_empty_log_is_pending() -> None:
    assert fold([]).status == "pending"


def test_state_changes_apply_in_order_with_dot_paths() -> None:
    log = started()
    log.sys(StepCompleted(step="a", trigger=2, state={"x": 1, "cfg.depth": 2}))
    log.sys(StepCompleted(step="b", trigger=2, state={"x": 5, "cfg.name": "n"}))
    st = fold(log.records)
    assert st.state == {"x": 5, "cfg": {"depth": 2, "name": "n"}}
    assert st.state_changed_seq == 4
    assert st.done == {(2, "a"), (2, "b")}
    assert fold(log.records, until_seq=3).state == {"x": 1, "cfg": {"depth": 2}}


def test_completion_and_first_terminal_record_wins() -> None:
    log = started()
    log.sys(RunCompleted(step="a", trigger=2, event_type="StopEvent", event={"result": 7}))
    log.sys(RunFailed(error_type="WorkflowTimeoutError", message="late"))
    log.sys(StepCompleted(step="b", trigger=2, state={"ignored": True}))
    st = fold(log.records)
    assert st.status == "completed"
    assert st.result is not None and st.result.event == {"result": 7}
    assert st.error is None
    assert st.state == {}
    assert (2, "b") in st.done  # still known as handled, so a redelivery is skipped
    assert st.ended_ns == 3000


def test_step_failure_fails_the_run() -> None:
    log = started()
    log.sys(StepFailed(step="a", trigger=2, error_type="builtins.ValueError", message="boom"))
    st = fold(log.records)
    assert st.status == "failed"
    assert isinstance(st.error, StepFailed) and st.error.message == "boom"
    assert st.steps_failed == 1


def test_cancel() -> None:
    log = started()
    log.sys(RunCancelled(reason="user"))
    assert fold(log.records).status == "cancelled"


def test_undecodable_records_are_skipped() -> None:
    log = started()
    bad = log.evt("Chunk", error="not json")
    st = fold(log.records)
    assert st.skipped == 1
    assert "Chunk" not in st.events
    assert st.seq == bad


def _folded(st: RunState) -> dict[str, object]:
    return {name: getattr(st, name) for name in RunState.__slots__ if name != "_log"}


def test_fold_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same records fold to the same state whatever the clock says, and record by record
    as at once (the fold reads no clock: here each fold sees another time)."""
    log = started()
    for i in range(5):
        log.evt("Chunk")
        log.sys(StepCompleted(step="s", trigger=i, state={f"k{i}": i}))
    log.sys(RunCompleted(step="s", trigger=4, event_type="StopEvent", event={"result": 1}))
    a = _folded(fold(log.records))
    assert a["status"] == "completed" and a["state"] == {f"k{i}": i for i in range(5)}
    real, real_ns, mono = time.time, time.time_ns, time.monotonic
    for shift in (3600.0, -86400.0 * 365):
        monkeypatch.setattr(time, "time", lambda s=shift: real() + s)
        monkeypatch.setattr(time, "time_ns", lambda s=shift: real_ns() + int(s * 1e9))
        monkeypatch.setattr(time, "monotonic", lambda s=shift: mono() + s)
        stepwise = RunState()
        for rec in log.records:
            stepwise.apply(rec)
        assert _folded(stepwise) == a
        assert _folded(fold(iter(log.records))) == a
        monkeypatch.undo()


def fan_out(n: int) -> tuple[RunState, list[int]]:
    log = started()
    seqs = [log.evt("Chunk") for _ in range(n)]
    return fold(log.records), seqs


def test_collect_completes_exactly_at_the_nth_event_whatever_the_order() -> None:
    st, seqs = fan_out(3)
    # Handle the triggers in any order: only the third event's trigger completes the collection.
    for trigger in reversed(seqs):
        got = st.collect("count", ["Chunk"] * 3, trigger)
        if trigger == seqs[2]:
            assert got == seqs
        else:
            assert got is None


def test_collect_partitions_extra_events_into_the_next_collection() -> None:
    st, seqs = fan_out(5)
    results = {s: st.collect("count", ["Chunk", "Chunk"], s) for s in seqs}
    assert results == {seqs[0]: None, seqs[1]: seqs[:2], seqs[2]: None, seqs[3]: seqs[2:4], seqs[4]: None}


def test_collect_ignores_events_consumed_before_the_trigger() -> None:
    log = started()
    a1, a2 = log.evt("Chunk"), log.evt("Chunk")
    log.sys(StepCompleted(step="count", trigger=a2, consumed=[a1, a2]))
    b1, b2 = log.evt("Chunk"), log.evt("Chunk")
    st = fold(log.records)
    assert st.collect("count", ["Chunk", "Chunk"], b1) is None
    assert st.collect("count", ["Chunk", "Chunk"], b2) == [b1, b2]
    # Consumption is per step: another step still sees all four.
    assert st.collect("other", ["Chunk", "Chunk"], b2) == [b1, b2]
    # As of a2 the consumption record did not exist yet, and a2 completed the first pair.
    assert st.collect("count", ["Chunk", "Chunk"], a2) == [a1, a2]


def test_collect_mixed_types_in_expected_order() -> None:
    log = started()
    b = log.evt("B")
    a = log.evt("A")
    st = fold(log.records)
    assert st.collect("join", ["A", "B"], b) is None
    assert st.collect("join", ["A", "B"], a) == [a, b]


def test_collect_respects_targets() -> None:
    log = started()
    x = log.evt("Chunk", target="elsewhere")
    y = log.evt("Chunk")
    z = log.evt("Chunk", target="count")
    st = fold(log.records)
    assert st.collect("count", ["Chunk", "Chunk"], z) == [y, z]
    assert x not in (st.collect("count", ["Chunk", "Chunk"], z) or [])


@pytest.mark.parametrize("n", [1, 10, 200])
def test_exactly_one_trigger_completes_a_fan_in(n: int) -> None:
    st, seqs = fan_out(n)
    winners = [s for s in seqs if st.collect("count", ["Chunk"] * n, s) is not None]
    assert winners == [seqs[-1]]


def test_memoised_collect_agrees_with_the_scan_on_random_logs() -> None:
    import random

    rng = random.Random(7)
    for _ in range(200):
        log = started()
        expected = rng.choice([["A"], ["A", "A"], ["A", "B"], ["B", "A", "A"]])
        for _ in range(rng.randint(1, 25)):
            kind = rng.random()
            if kind < 0.75:
                target = rng.choice([None, None, None, "join", "other"])
                log.evt(rng.choice(["A", "B"]), target=target)
            else:
                # a collection committed by the join step, as the executor would
                st = fold(log.records)
                triggers = [s for s, _ in st.events.get("A", []) + st.events.get("B", [])]
                if triggers:
                    trig = rng.choice(triggers)
                    got = st.collect_scan("join", expected, trig)
                    if got is not None and not any(
                        (trig, "join") == d for d in st.done
                    ):
                        log.sys(StepCompleted(step="join", trigger=trig, consumed=got))
        st = fold(log.records)
        for type_name in ("A", "B"):
            for seq, _ in st.events.get(type_name, []):
                assert st.collect("join", expected, seq) == st.collect_scan("join", expected, seq)


def test_collect_with_a_changed_expected_list_falls_back_to_the_scan() -> None:
    log = started()
    a1 = log.evt("A")
    log.sys(StepCompleted(step="join", trigger=a1, consumed=[a1]))  # collected with ["A"]
    a2, a3 = log.evt("A"), log.evt("A")
    st = fold(log.records)
    assert st.collect("join", ["A", "A"], a3) == st.collect_scan("join", ["A", "A"], a3) == [a2, a3]
