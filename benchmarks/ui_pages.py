"""The web UI's runs list at scale: ``GET /ui/`` (server-rendered, one page of the run index)
over a stream of many runs, through a real control plane on uvicorn.

Appends ``--runs`` runs (default 100,000) to a fresh nats-server (file storage), each a
``RunStarted``, ``--records`` other records and, for some, an end (a third ``RunCompleted``, one
in fifty ``RunFailed``, one in a hundred a ``StepSuspended`` event wait: ``waiting``). Then
times over HTTP (median of ``--repeat``), with the page of 50 rows rendered:

- the first page (``/ui/``), beside the same page of the JSON API (``GET /runs``), and with a
  workflow filter;
- the 50th page (following ``Older``'s cursor);
- the rare statuses (``?status=waiting``, ``?status=failed``).

Run ``python -m benchmarks.ui_pages`` (``--help`` for the options). docs/ui.md quotes a run.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from benchmarks.listing import fill
from engine.jetstream.log import JetStreamLog
from services.launcher import ControlPlaneServer
from services.natsserver import EmbeddedNats

OLDER = re.compile(r'rel="next" href="([^"]+)"')

app = typer.Typer(add_completion=False)


async def timed(http: httpx.AsyncClient, path: str, repeat: int) -> tuple[float, str]:
    """Median milliseconds of ``GET path`` (which must answer 200) and its last body."""
    times, body = [], ""
    for _ in range(repeat):
        began = time.perf_counter()
        resp = await http.get(path)
        times.append((time.perf_counter() - began) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:200]}")
        body = resp.text
    return statistics.median(times), body


async def measure(runs: int, records: int, repeat: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="jetloom-ui-bench-") as store:
        async with EmbeddedNats(port=0, store_dir=Path(store)) as server:
            log = await JetStreamLog.connect(server.url)
            try:
                figures["fill_s"] = await fill(log, runs, records)
            finally:
                await log.close()
            cp = ControlPlaneServer(server.url, port=0, shutdown_grace=1.0)
            await cp.start()
            try:
                async with httpx.AsyncClient(base_url=cp.url, timeout=120) as http:
                    figures["first page"], body = await timed(http, "/ui/", repeat)
                    rows = body.count('<tr id="run-')
                    if rows != 50:
                        raise RuntimeError(f"the first page has {rows} rows, not 50")
                    figures["the same from the JSON API (GET /runs)"], _ = await timed(http, "/runs?limit=50", repeat)
                    figures["first page, workflow=Orders"], _ = await timed(http, "/ui/?workflow=Orders", repeat)
                    path = "/ui/"
                    for _ in range(49):  # follow "Older" to page 50
                        found = OLDER.search((await http.get(path)).text)
                        if found is None:
                            raise RuntimeError(f"no Older link on {path}")
                        path = found.group(1).replace("&amp;", "&")
                    figures["page 50"], _ = await timed(http, path, repeat)
                    figures["status=waiting"], _ = await timed(http, "/ui/?status=waiting", repeat)
                    figures["status=failed"], _ = await timed(http, "/ui/?status=failed", repeat)
            finally:
                await cp.stop()
    return figures


@app.command()
def main(
    runs: Annotated[int, typer.Option(help="runs in the stream")] = 100_000,
    records: Annotated[int, typer.Option(help="other records per run")] = 3,
    repeat: Annotated[int, typer.Option(help="timings per page (the median is shown)")] = 5,
) -> None:
    """Time the runs list of the web UI over ``--runs`` runs."""
    figures = asyncio.run(measure(runs, records, repeat))
    print(f"{runs:,} runs ({records} other records each), filled in {figures.pop('fill_s'):.1f} s")
    print("| page | ms (median) |\n|---|---|")
    for name, ms in figures.items():
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    app()
