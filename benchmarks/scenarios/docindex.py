"""(f) The docindex example (examples/docindex) distributed over 2 worker processes, beside a plain
single-process loop (``find_python_files`` + ``index_file``) over the same files. Both build the
same SQLite FTS5 index; the counts must agree."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from examples.docindex.store import DocStore
from examples.docindex.workflow import DocIndex, default_root, find_python_files, index_file
from services.nats_client import NatsClient

from ..harness import Harness
from ..measure import CpuMeter, run_loop
from ..procs import run_json, start_children
from .chain import jetloom_worker_args

TITLE = "docindex example: distributed vs a plain loop"
WORKERS = 2


def quick_root() -> str:
    """The small tree quick mode indexes: the standard library's ``json`` package."""
    return os.path.join(default_root(), "json")


def plain_loop(root: str, db: str) -> dict[str, Any]:
    """Index ``root`` into ``db`` in this process, one file after another; returns the counts
    (``files``, ``parsed``, ``skipped``, ``docstrings``), ``wall_s`` and ``cpu_s``."""
    t0, c0 = time.perf_counter(), time.process_time()
    root = os.path.abspath(root)
    store = DocStore(db)
    store.create_schema()
    files = find_python_files(root)
    parsed = docstrings = 0
    for path in files:
        done = index_file(store, path, root)
        parsed += done.status == "parsed"
        docstrings += done.docstrings
    return {
        "files": len(files),
        "parsed": parsed,
        "skipped": len(files) - parsed,
        "docstrings": docstrings,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
    }


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    root = os.path.abspath(o.docindex_root or (quick_root() if o.quick else default_root()))
    work = Path(h.tmp) / "docindex"
    work.mkdir(exist_ok=True)
    with h.task("(f) docindex plain loop", 1) as advance:
        plain = run_json(["docloop", root, str(work / "plain.db")])
        advance(1)
    plain["cpu_s"] = {"engine": plain["cpu_s"]}
    srv = h.server()
    workers = start_children(
        [jetloom_worker_args("examples.docindex.workflow:DocIndex", srv.url, h.uvloop)] * WORKERS,
        "jetloom worker ready",
    )
    meter = CpuMeter(
        {"engine": [c.pid for c in workers], "server": [srv.pid or 0], "driver": [os.getpid()]}
    )

    async def main() -> dict[str, Any]:
        client = await NatsClient.connect(srv.url)
        try:
            with h.task("(f) docindex distributed", 1) as advance:
                meter.start()
                t0 = time.perf_counter()
                handler = await client.start(
                    DocIndex, root=root, db=str(work / "distributed.db"), timeout=3600
                )
                result: dict[str, Any] = await handler
                wall = time.perf_counter() - t0
                cpu = meter.stop()
                advance(1)
        finally:
            await client.close()
        return {**result, "wall_s": wall, "cpu_s": cpu, "workers": WORKERS}

    try:
        distributed = run_loop(main, uvloop=h.uvloop)
    finally:
        for c in workers:
            c.stop()
    transitions = 1 + 2 * distributed["files"]
    distributed["transitions"] = transitions
    distributed["cpu_us_per_transition"] = {
        g: v / transitions * 1e6 for g, v in distributed["cpu_s"].items()
    }
    return {
        "root": root,
        "results": {"plain": plain, "jetloom": distributed},
        "same_counts": all(
            plain[k] == distributed[k] for k in ("files", "parsed", "skipped", "docstrings")
        ),
        "wall_ratio": distributed["wall_s"] / plain["wall_s"] if plain["wall_s"] else None,
    }
