"""``LogRunIndex`` listings over a few hundred runs of several workflows: both orders, cursors,
workflow and status filters (``waiting`` too), no run missing or repeated across pages."""

from __future__ import annotations

import random

import msgspec
import pytest

from engine.memory.log import MemoryLog
from engine.model.records import OutMessage, Resume, ResumeEvent, StepSuspended
from engine.ports.runindex import RUN_STATUSES, LogRunIndex, RunSummary
from engine.wire.subjects import run_subject

WORKFLOWS = ("Alpha", "Beta", "Gamma")


def _msg(wf: str, run: str, kind: str, type_name: str, body: object = None) -> OutMessage:
    data = b"{}" if body is None else msgspec.json.encode(body)
    return OutMessage(run_subject("jetloom", wf, run, kind, type_name), data, {})  # type: ignore[arg-type]


def _wait(step: str, wait: str, kind: str = "event") -> StepSuspended:
    return StepSuspended(step=step, trigger=1, wait=wait, kind=kind, event_type="Answer" if kind == "event" else None)


async def _populate(log: MemoryLog, n: int, seed: int = 7) -> dict[str, tuple[str, str]]:
    """``n`` runs, interleaved with other records so that RunStarted sequences are uneven;
    returns ``{run_id: (workflow, expected status)}``."""
    rnd = random.Random(seed)
    expected: dict[str, tuple[str, str]] = {}
    for i in range(n):
        wf, run = WORKFLOWS[i % 3], f"r{i:04d}"
        await log.append([_msg(wf, run, "sys", "RunStarted")])
        for _ in range(rnd.randrange(0, 6)):  # other records between runs (another run's steps)
            await log.append([_msg("Noise", f"n{i}", "evt", "Tick")])
        shape = rnd.randrange(7)
        status = "running"
        if shape == 0:
            await log.append([_msg(wf, run, "sys", "RunCompleted")])
            status = "completed"
        elif shape == 1:
            await log.append([_msg(wf, run, "sys", "StepFailed", {"step": "go"})])
            status = "failed"
        elif shape == 2:
            await log.append([_msg(wf, run, "sys", "RunCancelled")])
            status = "cancelled"
        elif shape == 3:  # waits for an event
            await log.append([_msg(wf, run, "sys", "StepSuspended", _wait("ask", "w1"))])
            status = "waiting"
        elif shape == 4:  # waited, the event came
            await log.append([_msg(wf, run, "sys", "StepSuspended", _wait("ask", "w1"))])
            resume = Resume(step="ask", trigger=1, reason="event", wait="w1", event=ResumeEvent(type="Answer", seq=1))
            await log.append([_msg(wf, run, "cmd", "ask", resume)])
        elif shape == 5:  # two waits in two steps; the later one resolved, the first still open
            await log.append([_msg(wf, run, "sys", "StepSuspended", _wait("ask", "w1"))])
            await log.append([_msg(wf, run, "sys", "StepSuspended", _wait("check", "w1"))])
            await log.append([_msg(wf, run, "cmd", "check", Resume(step="check", trigger=1, reason="timeout", wait="w1"))])
            status = "waiting"
        else:  # a sleep is no wait for an event
            await log.append([_msg(wf, run, "sys", "StepSuspended", _wait("nap", "w1", kind="timer"))])
        expected[run] = (wf, status)
    return expected


async def _pages(index: LogRunIndex, *, limit: int, **kw: object) -> list[list[RunSummary]]:
    pages: list[list[RunSummary]] = []
    cursor = 0
    while True:
        page, nxt = await index.list_runs(limit=limit, cursor=cursor, **kw)  # type: ignore[arg-type]
        pages.append(page)
        if nxt is None:
            return pages
        assert nxt == page[-1].seq  # the next cursor is the last run returned
        cursor = nxt
        assert len(pages) < 1000


@pytest.fixture
async def populated() -> tuple[LogRunIndex, dict[str, tuple[str, str]]]:
    log = MemoryLog()
    expected = await _populate(log, 300)
    return LogRunIndex(log), expected


@pytest.mark.parametrize("limit", [1, 7, 50, 1000])
async def test_newest_first_pages_every_run_once_in_descending_sequence(
    populated: tuple[LogRunIndex, dict[str, tuple[str, str]]], limit: int
) -> None:
    index, expected = populated
    pages = await _pages(index, limit=limit, newest_first=True)
    runs = [r for p in pages for r in p]
    assert all(len(p) == limit for p in pages[:-1])
    assert [r.run_id for r in runs] == sorted(expected, reverse=True)  # started in id order
    seqs = [r.seq for r in runs]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert {r.run_id: (r.workflow, r.status) for r in runs} == expected
    oldest = [r for p in await _pages(index, limit=limit) for r in p]
    assert oldest == runs[::-1]  # the same runs, the same fields, the other way round


@pytest.mark.parametrize("status", RUN_STATUSES)
@pytest.mark.parametrize("workflow", [None, "Beta"])
async def test_filters_page_without_gaps_or_duplicates(
    populated: tuple[LogRunIndex, dict[str, tuple[str, str]]], status: str, workflow: str | None
) -> None:
    index, expected = populated
    want = sorted(
        (run for run, (wf, st) in expected.items() if st == status and workflow in (None, wf)), reverse=True
    )
    assert want  # (every status occurs)
    for newest_first in (True, False):
        pages = await _pages(index, limit=6, status=status, workflow=workflow, newest_first=newest_first)
        got = [r.run_id for p in pages for r in p]
        assert got == (want if newest_first else want[::-1])
        assert all(r.status == status for p in pages for r in p)


async def test_a_cursor_in_the_middle_continues_below_it(
    populated: tuple[LogRunIndex, dict[str, tuple[str, str]]],
) -> None:
    index, expected = populated
    every, _ = await index.list_runs(limit=1000, newest_first=True)
    middle = every[120]
    page, nxt = await index.list_runs(limit=10, cursor=middle.seq, newest_first=True)
    assert page == every[121:131] and nxt == every[130].seq
    page, _ = await index.list_runs(limit=10, cursor=middle.seq)
    assert page == every[110:120][::-1]


async def test_an_empty_log_and_an_unknown_workflow_list_nothing() -> None:
    index = LogRunIndex(MemoryLog())
    assert await index.list_runs(newest_first=True) == ([], None)
    log = MemoryLog()
    await _populate(log, 5)
    assert await LogRunIndex(log).list_runs(workflow="Nope", newest_first=True) == ([], None)


async def test_a_status_filter_stops_scanning_once_its_page_is_full() -> None:
    """The newest runs fill the page: the windows read stay near the end of the log."""
    log = MemoryLog()
    await _populate(log, 300)
    scanned: list[int] = []
    real_scan = log.scan

    async def counting_scan(subject_filter: str, *, after_seq: int = 0, limit: int = 1000) -> list:  # type: ignore[type-arg]
        scanned.append(after_seq)
        return await real_scan(subject_filter, after_seq=after_seq, limit=limit)

    log.scan = counting_scan  # type: ignore[method-assign]
    page, _ = await LogRunIndex(log).list_runs(status="waiting", limit=5, newest_first=True)
    assert len(page) == 5
    head = log._all[-1].seq  # noqa: SLF001 - the test reads the memory log's length
    window_starts = [s for s in scanned if s > 0]
    assert min(window_starts) > head / 2  # never read back to the start of the log


async def test_bad_status_and_limit_are_refused() -> None:
    index = LogRunIndex(MemoryLog())
    with pytest.raises(ValueError, match="status must be one of"):
        await index.list_runs(status="sleeping")
    with pytest.raises(ValueError, match="limit must be at least 1"):
        await index.list_runs(limit=0, newest_first=True)
