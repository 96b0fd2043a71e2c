"""``python -m examples.llamarag``: answer a question from the bundled corpus with two worker
processes on NATS.

Starts the embedded nats-server (temporary store) and ``--workers`` worker processes
(``python -m services.cli worker examples.llamarag.workflow:RagWorkflow``), runs ``RagWorkflow``
through ``NatsClient`` (streamed ``Embedded`` events go to stderr), prints the answer and its
sources, then stops the workers and the server. With ``--api URL`` it uses a running control
plane instead (``jetloom dev examples/llamarag/jetloom.toml``) and starts nothing itself.

The last line on stdout is one JSON object: ``{"sources": [[file, score], ...], "chunks": N,
"seconds": T}``, T being the run's own time (from its start to its result).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import JetloomError
from services.client import ApiError, Client
from services.launcher import WorkerProcess, WorkerStartError
from services.nats_client import NatsClient
from services.natsserver import EmbeddedNats

from .documents import CORPUS, load_documents
from .workflow import Embedded, RagStart, RagWorkflow

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET = "examples.llamarag.workflow:RagWorkflow"
READY_TIMEOUT = 60.0  # seconds a worker may take to start consuming


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _progress(ev: Embedded) -> None:
    _say(f"embedded {ev.source}: {ev.chunks} chunk{'' if ev.chunks == 1 else 's'}")


async def over_nats(
    start: RagStart, workers: int, timeout: float
) -> tuple[dict[str, Any], float]:
    """Run once on a fresh embedded nats-server with ``workers`` worker processes; the result and
    the seconds from the start of the run to its result (server and workers started before)."""
    tmp = Path(tempfile.mkdtemp(prefix="jetloom-llamarag-"))
    procs: list[WorkerProcess] = []
    server = EmbeddedNats(port=0, store_dir=tmp / "nats")
    try:
        await server.astart()
        for _ in range(workers):
            procs.append(await WorkerProcess.start(TARGET, server.url, cwd=REPO_ROOT))
        for line in await asyncio.gather(*(w.wait_ready(READY_TIMEOUT) for w in procs)):
            _say(line)
        client = await NatsClient.connect(server.url)
        try:
            t0 = time.perf_counter()
            handler = await client.start(RagWorkflow, start_event=start, timeout=timeout)
            async for ev in handler.stream_events():
                if isinstance(ev, Embedded):
                    _progress(ev)
            result: dict[str, Any] = await handler
            return result, time.perf_counter() - t0
        finally:
            await client.close()
    finally:
        await asyncio.gather(*(w.stop() for w in procs), return_exceptions=True)
        await server.astop()
        await asyncio.to_thread(shutil.rmtree, tmp, True)


async def over_http(start: RagStart, api: str) -> tuple[dict[str, Any], float]:
    """Run once through the control plane at ``api``; the result and the seconds it took."""
    async with Client(api) as client:
        t0 = time.perf_counter()
        handle = await client.start(RagWorkflow, start_event=start)
        async for ev in handle.stream():
            if isinstance(ev, Embedded):
                _progress(ev)
        result: dict[str, Any] = await handle.result()
        return result, time.perf_counter() - t0


async def _main(args: argparse.Namespace) -> int:
    start = RagStart(question=args.question, documents=load_documents(args.corpus), top_k=args.top_k)
    if args.api:
        result, seconds = await over_http(start, args.api)
    else:
        result, seconds = await over_nats(start, args.workers, args.timeout)
    print(result["answer"])
    for i, src in enumerate(result["sources"], 1):
        print(f"{i}. {src['file']} (score {src['score']:.3f})")
    sources = [[s["file"], s["score"]] for s in result["sources"]]
    print(json.dumps({"sources": sources, "chunks": result["chunks"], "seconds": round(seconds, 3)}))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m examples.llamarag",
        description="Answer a question from a small corpus with a llama-index RAG workflow on jetloom.",
    )
    p.add_argument(
        "question", nargs="?", default="How do honeybees tell each other where the flowers are?"
    )
    p.add_argument("--corpus", default=str(CORPUS), help="directory of *.txt files")
    p.add_argument("--top-k", type=int, default=2, help="chunks put in the prompt (default 2)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for the run (default 120)")
    p.add_argument("--api", default=None, help="a running control plane's URL: use it instead")
    args = p.parse_args(argv)
    if args.workers < 1 or args.top_k < 1:
        p.error("--workers and --top-k must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError, TimeoutError, JetloomError, ApiError, WorkerStartError) as exc:
        _say(f"llamarag: {type(exc).__name__}: {exc}")  # expected failures: one line
        return 1


if __name__ == "__main__":
    sys.exit(main())
