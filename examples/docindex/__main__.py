"""``python -m examples.docindex``: index the standard library's docstrings on NATS, then search.

Starts the embedded nats-server (temporary store), starts ``--workers`` worker processes
(``python -m services.cli worker examples.docindex.workflow:DocIndex``), runs ``DocIndex`` through
``NatsClient`` with a progress bar fed by the run's streamed ``Progress`` events, prints the top 5
docstrings for ``--query``, stops the workers and the server, and prints one JSON line last::

    {"files": N, "parsed": P, "skipped": S, "docstrings": D, "seconds": T}

The progress bar goes to stderr; the search results and the JSON line go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as ProgressBar
from rich.text import Text

from services.launcher import WorkerProcess
from services.nats_client import NatsClient
from services.natsserver import EmbeddedNats

from .store import DocStore
from .workflow import DocIndex, Progress, default_root

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET = "examples.docindex.workflow:DocIndex"
READY_TIMEOUT = 60.0  # seconds a worker may take to start consuming
MARK = ("\x01", "\x02")  # snippet markers, turned into highlighting

err = Console(stderr=True)
out = Console(highlight=False)


async def _all_exited(workers: list[WorkerProcess]) -> None:
    await asyncio.gather(*(w.wait() for w in workers))
    tails = "\n".join(
        f"--- worker {w.proc.pid} (exit {w.proc.returncode})\n{w.output()}" for w in workers
    )
    raise RuntimeError(f"every worker exited during the run:\n{tails}")


def _highlighted(snippet: str) -> Text:
    text = Text()
    rest = snippet.replace("\n", " ")
    while rest:
        before, sep, after = rest.partition(MARK[0])
        text.append(before)
        if not sep:
            break
        term, _, rest = after.partition(MARK[1])
        text.append(term, style="bold yellow")
    return text


def _show_hits(store: DocStore, query: str, root: str, limit: int = 5) -> None:
    hits = store.search(query, limit, markers=MARK)
    out.print(Text(f"Top {len(hits)} docstrings for {query!r}:", style="bold"))
    out.print(
        Text("(those with every word first, then those with some; each group by bm25)", style="dim")
    )
    for i, hit in enumerate(hits, 1):
        try:
            shown = os.path.relpath(hit.path, root)
        except ValueError:
            shown = hit.path
        out.print(
            Text.assemble(
                (f"{i}. ", "bold"), (hit.qualname, "cyan"), f"  ({shown}, bm25 {hit.rank:.2f})"
            )
        )
        out.print(Text("   ").append_text(_highlighted(hit.snippet)))
    if not hits:
        out.print("   (no matches)")


async def _index(client: NatsClient, root: str, db: str, timeout: float) -> dict[str, int]:
    columns = (
        TextColumn("[bold]indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    parsed = skipped = docstrings = 0
    with ProgressBar(*columns, console=err) as bar:
        task = bar.add_task("files", total=None, stats="")
        handler = await client.start(DocIndex, root=root, db=db, timeout=timeout)
        try:
            async for ev in handler.stream_events():
                if isinstance(ev, Progress):
                    parsed += ev.status == "parsed"
                    skipped += ev.status == "skipped"
                    docstrings += ev.docstrings
                    stats = f"{docstrings} docstrings, {skipped} skipped"
                    bar.update(task, total=ev.total, advance=1, stats=stats)
            result = await handler
        except asyncio.CancelledError:
            # Interrupted: record the run as cancelled, so no worker goes on with it.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(5):
                    await handler.cancel_run("interrupted")
                handler.exception()  # WorkflowCancelledError, retrieved
            raise
        bar.update(task, total=max(result["files"], 1), completed=result["files"])
    return result


async def run_demo(args: argparse.Namespace) -> dict[str, float | int]:
    root = args.root
    tmp = Path(tempfile.mkdtemp(prefix="jetloom-docindex-"))
    db = args.db or str(tmp / "docindex.db")
    workers: list[WorkerProcess] = []

    def echo(pid: int, line: str) -> None:
        if args.verbose:
            err.print(f"[dim]worker {pid}:[/] {line}", markup=True, highlight=False)

    server = EmbeddedNats(port=0, store_dir=tmp / "nats")
    try:
        await server.astart()
        err.print(f"nats-server at {server.url}; indexing {root} into {db}", highlight=False)
        for _ in range(args.workers):
            workers.append(
                await WorkerProcess.start(TARGET, server.url, cwd=REPO_ROOT, on_line=echo)
            )
        async with asyncio.timeout(READY_TIMEOUT):
            ready = await asyncio.gather(*(w.ready for w in workers))
        for line in ready:
            err.print(line, highlight=False, markup=False)

        client = await NatsClient.connect(server.url)
        try:
            t0 = time.perf_counter()
            watchdog = asyncio.create_task(_all_exited(workers))
            job = asyncio.create_task(_index(client, root, db, args.timeout))
            try:
                done, _ = await asyncio.wait({job, watchdog}, return_when=asyncio.FIRST_COMPLETED)
                if job not in done:
                    job.cancel()
                    await asyncio.gather(job, return_exceptions=True)
                    watchdog.result()  # raises: every worker exited
                result = job.result()
            finally:
                for t in (job, watchdog):
                    t.cancel()
                await asyncio.gather(job, watchdog, return_exceptions=True)
            seconds = round(time.perf_counter() - t0, 2)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

        await asyncio.to_thread(_show_hits, DocStore(db), args.query, root)
        return {**result, "seconds": seconds}
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        await server.astop()
        await asyncio.to_thread(shutil.rmtree, tmp, True)  # the nats store, and the db if temporary


async def _main(args: argparse.Namespace) -> dict[str, float | int]:
    # SIGTERM (e.g. from `timeout`) cancels the run like Ctrl-C, so the finally blocks stop the
    # workers and the server instead of leaving them behind.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_demo(args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m examples.docindex",
        description="Index the standard library's docstrings with jetloom workers on NATS, then search.",
    )
    p.add_argument(
        "--root", default=default_root(), help="directory to index (default: the stdlib)"
    )
    p.add_argument("--db", default=None, help="SQLite database file (default: a temporary file)")
    p.add_argument("--query", default="parse a JSON document", help="what to search for")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds the run may take")
    p.add_argument("-v", "--verbose", action="store_true", help="echo the workers' output")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if not os.path.isdir(args.root):
        p.error(f"--root {args.root!r} is not a directory")
    args.root = os.path.abspath(args.root)
    args.db = os.path.abspath(args.db) if args.db else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = asyncio.run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("[red]interrupted[/]")
        return 130
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
