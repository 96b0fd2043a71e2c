"""``services.cli_progress``: the fold of a run's records into step progress, and its rich view."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from services.cli_progress import RunProgress, follow_progress, summarise

RID = "0123456789abcdef0123456789abcdef"


def rec(seq: int, kind: str, type_: str, data: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "type": type_, "data": data or {}, **extra}


RECORDS = [
    rec(1, "sys", "RunStarted", {"workflow": "Review", "run_id": RID}),
    rec(2, "evt", "StartEvent", {"$type": "StartEvent", "doc": "a"}),
    rec(3, "sys", "StepRetrying", {"attempt": 1, "error_type": "builtins.OSError", "message": "disk\nfull", "delay_ms": 200.0}, step="load", trigger=2),
    rec(4, "cmd", "load", {"reason": "retry"}, step="load", trigger=2),
    rec(5, "evt", "Loaded", {"$type": "Loaded", "text": "x" * 200}, step="load", trigger=2, completes_step=True),
    rec(6, "out", "Note", {"$type": "Note", "text": "loaded"}, step="review", trigger=5),
    rec(7, "sys", "StepSuspended", {"kind": "event", "event_type": "Approval", "wait": "w1"}, step="review", trigger=5),
    rec(8, "sch", "5-review-w1", {}, step="review", trigger=5),
]  # fmt: skip

ACCEPTS = {"load": ["StartEvent"], "review": ["Loaded"], "publish": ["Approved"]}


def test_the_fold_counts_each_state_and_says_each_change_in_one_line() -> None:
    p = RunProgress(RID, "Review", ACCEPTS)
    lines = [line for r in RECORDS for line in p.apply(r)]
    assert lines == [
        f"run {RID} started (Review)",
        "step load running (on StartEvent, trigger 2)",
        "step load retrying (attempt 1 failed: OSError: disk full; attempt 2 in 200 ms)",
        "step load resumed (retry, trigger 2)",
        "step load done (trigger 2)",
        "step review running (on Loaded, trigger 5)",
        'event Note {"text":"loaded"}',
        "step review waiting for Approval (trigger 5)",
    ]
    assert p.counts() == {"done": 1, "running": 0, "waiting": 1, "retrying": 0, "failed": 0}
    assert list(p.steps) == ["load", "review", "publish"]  # the description's order
    more = p.apply(rec(9, "cmd", "review", {"reason": "event"}, step="review", trigger=5))
    assert more == ["step review resumed (event, trigger 5)"]
    assert p.counts()["running"] == 1 and p.counts()["waiting"] == 0
    assert p.apply(rec(10, "sys", "RunCompleted", {}, step="review", trigger=5)) == ["step review done (trigger 5)"]
    assert p.ended == "RunCompleted" and p.counts()["done"] == 2


def test_without_a_description_steps_appear_as_records_name_them() -> None:
    p = RunProgress(RID, "Review")
    for r in RECORDS:
        p.apply(r)
    assert list(p.steps) == ["load", "review"] and p.counts()["waiting"] == 1


def test_summaries_are_short_and_untagged() -> None:
    assert summarise({"$type": "X", "a": 1}) == '{"a":1}'
    cut = summarise({"text": "x" * 200})
    assert len(cut) == 80 and cut.endswith("...")


def test_the_live_view_on_a_terminal_shows_every_step_and_the_streamed_events() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, record=True)
    p = RunProgress(RID, "Review", ACCEPTS)
    follow_progress(RECORDS, p, console)  # a terminal: rich Live
    assert "\x1b[" in screen.getvalue()  # drawn with escape codes
    text = console.export_text()
    assert RID in text and "1 done" in text and "1 waiting" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.split()[:1] in (["load"], ["review"])}
    assert rows["load"] == ["1", "0", "0", "0"]
    assert rows["review"] == ["0", "0", "0", "0", "Approval"]
    assert 'Note  {"text":"loaded"}' in text


def test_not_a_terminal_gets_plain_lines() -> None:
    screen = io.StringIO()
    follow_progress(RECORDS[:3], RunProgress(RID, "Review", ACCEPTS), Console(file=screen, width=80))
    assert "\x1b" not in screen.getvalue()
    assert screen.getvalue().splitlines()[-1].startswith("step load retrying (attempt 1 failed: OSError")
