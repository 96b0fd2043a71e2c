"""Run listings at scale: ``GET /runs``'s index (``LogRunIndex``) over a stream of many runs.

Appends ``--runs`` runs (default 100,000) to a fresh nats-server (file storage): each a
``RunStarted`` and ``--records`` other records of the run; a third end with ``RunCompleted``,
one in fifty with ``RunFailed``, one in a hundred waits for an event (``StepSuspended``).
Then times, newest first and oldest first (median of ``--repeat``):

- the first page (``--limit`` runs, default 50);
- page 50 (from the cursor page 49 returned);
- a page filtered by status: ``completed`` (common), ``failed`` and ``waiting`` (rare);
- walking every page of ``--walk-limit`` runs (default 1,000): the whole listing.

Run ``python -m benchmarks.listing`` (``--help`` for the options); ``--json FILE`` also writes
the figures. docs/benchmarks.md ("Run listings") holds the figures of a run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from engine.jetstream.log import JetStreamLog
from engine.model.records import OutMessage, StepSuspended
from engine.ports.runindex import LogRunIndex
from engine.wire.subjects import run_subject
from services.natsserver import EmbeddedNats

WORKFLOWS = ("Orders", "Invoices")
_WAIT = msgspec.json.encode(StepSuspended(step="approve", trigger=1, wait="w1", kind="event", event_type="Approval"))

app = typer.Typer(add_completion=False)


def run_messages(i: int, records: int) -> list[OutMessage]:
    """The records of run ``i``: ``RunStarted``, ``records`` events, and an end or a wait for some."""
    wf, run = WORKFLOWS[i % len(WORKFLOWS)], f"run{i:07d}"

    def m(kind: str, type_name: str, data: bytes = b"{}") -> OutMessage:
        return OutMessage(run_subject("jetloom", wf, run, kind, type_name), data, {})  # type: ignore[arg-type]

    out = [m("sys", "RunStarted")] + [m("evt", f"Step{k}") for k in range(records)]
    if i % 3 == 0:
        out.append(m("sys", "RunCompleted"))
    elif i % 50 == 1:
        out.append(m("sys", "RunFailed", b'{"error_type":"X","message":"m"}'))
    elif i % 100 == 2:
        out.append(m("sys", "StepSuspended", _WAIT))
    return out


async def fill(log: JetStreamLog, runs: int, records: int, concurrency: int = 64) -> float:
    """Append ``runs`` runs with ``concurrency`` appenders; seconds taken."""
    began = time.perf_counter()
    queue = iter(range(runs))

    async def appender() -> None:
        for i in queue:
            await log.append(run_messages(i, records))

    await asyncio.gather(*(appender() for _ in range(concurrency)))
    return time.perf_counter() - began


async def _median(repeat: int, call: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


async def _measure_order(
    index: LogRunIndex, newest: bool, *, limit: int, walk_limit: int, repeat: int
) -> dict[str, float]:
    row: dict[str, float] = {}
    row["first page"] = await _median(repeat, lambda: index.list_runs(limit=limit, newest_first=newest))
    cursor: int | None = 0
    at = 0
    for _ in range(49):  # (fewer runs than 50 pages: the last page)
        _, cursor = await index.list_runs(limit=limit, cursor=at, newest_first=newest)
        if cursor is None:
            break
        at = cursor
    row["page 50"] = await _median(repeat, lambda: index.list_runs(limit=limit, cursor=at, newest_first=newest))
    for status in ("completed", "failed", "waiting"):
        row[f"first page, {status}"] = await _median(
            repeat, functools.partial(index.list_runs, limit=limit, status=status, newest_first=newest)
        )

    async def walk() -> None:
        cursor: int | None = 0
        while cursor is not None:
            _, cursor = await index.list_runs(limit=walk_limit, cursor=cursor, newest_first=newest)

    row[f"every page of {walk_limit}"] = await _median(1, walk)
    return row


async def _measure(index: LogRunIndex, *, limit: int, walk_limit: int, repeat: int) -> dict[str, dict[str, float]]:
    return {
        order: await _measure_order(index, newest, limit=limit, walk_limit=walk_limit, repeat=repeat)
        for order, newest in (("newest", True), ("oldest", False))
    }


def _markdown(figures: dict[str, dict[str, float]], runs: int, records: int, fill_s: float) -> str:
    lines = [
        f"{runs:,} runs ({records} other records each, some ends), filled in {fill_s:.1f} s; ms, median",
        "",
        "| listing | newest first | oldest first |",
        "|---|---:|---:|",
    ]
    for key in figures["newest"]:
        lines.append(f"| {key} | {figures['newest'][key]:.1f} | {figures['oldest'][key]:.1f} |")
    return "\n".join(lines)


async def _main(runs: int, records: int, limit: int, walk_limit: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jetloom-listing-") as store:
        async with EmbeddedNats(port=0, store_dir=Path(store)) as server:
            log = await JetStreamLog.connect(server.url)
            try:
                fill_s = await fill(log, runs, records)
                index = LogRunIndex(log)
                check, _ = await index.list_runs(limit=3, newest_first=True)
                assert [r.run_id for r in check] == [f"run{i:07d}" for i in (runs - 1, runs - 2, runs - 3)] or runs < 3
                figures = await _measure(index, limit=limit, walk_limit=walk_limit, repeat=repeat)
            finally:
                await log.close()
    return {"runs": runs, "records": records, "limit": limit, "fill_s": fill_s, "figures": figures}


@app.command()
def main(
    runs: Annotated[int, typer.Option(help="runs appended")] = 100_000,
    records: Annotated[int, typer.Option(help="other records per run")] = 3,
    limit: Annotated[int, typer.Option(help="runs per timed page")] = 50,
    walk_limit: Annotated[int, typer.Option(help="runs per page when walking every page")] = 1000,
    repeat: Annotated[int, typer.Option(help="timings per figure (median)")] = 5,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
) -> None:
    """Time run listings over a stream of many runs (see the module docstring)."""
    doc = asyncio.run(_main(runs, records, limit, walk_limit, repeat))
    print(_markdown(doc["figures"], runs, records, doc["fill_s"]))
    if json_out is not None:
        json_out.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    app()
