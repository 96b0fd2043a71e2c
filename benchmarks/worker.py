"""Child processes of the harness: ``python -m benchmarks.worker COMMAND ...``.

Each measured system runs in a process of its own so its CPU time can be told apart from the
driver's and the server's:

- ``jetloom TARGET --nats URL``: a jetloom step worker (``services.worker.serve``, the function
  behind ``jetloom worker``), with the event loop chosen by ``--uvloop/--no-uvloop`` (the CLI
  always takes uvloop when it is installed, so it cannot show the figure both ways).
- ``limit --nats URL``: the hand-written nats-py steps (``benchmarks.limit``).
- ``peer-chain`` / ``peer-fan``: llama-index-workflows in-process (``benchmarks.peer``); prints
  one JSON line with its own timings and CPU seconds.
- ``docloop ROOT DB``: the plain single-process docindex loop; prints one JSON line.

Workers print a line starting with ``jetloom worker ready`` / ``limit worker ready`` once consuming
and stop on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Annotated

import typer

from .measure import run_loop

app = typer.Typer(add_completion=False, no_args_is_help=True)

UvloopOpt = Annotated[bool, typer.Option("--uvloop/--no-uvloop", help="Use uvloop if installed.")]


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


@app.command()
def jetloom(
    target: str,
    nats_url: Annotated[str, typer.Option("--nats")],
    uvloop: UvloopOpt = True,
    prefix: str = "jetloom",
    replicas: int = 1,
) -> None:
    """A jetloom step worker for TARGET (``module:WorkflowClass``); ``--nats`` may list a
    cluster's nodes, comma-separated, and ``--replicas`` is that of the streams it creates.
    With ``JETLOOM_BENCH_METRICS=1`` in the environment the worker serves its Prometheus metrics
    (``--metrics-port 0``), to measure what they cost; with ``JETLOOM_BENCH_AFFINITY=0`` it runs
    without run affinity (``jetloom worker --no-affinity``; default on, as the CLI)."""
    from engine.jetstream.connection import NatsSettings
    from services.worker import serve

    settings = NatsSettings(url=nats_url, replicas=replicas)
    metrics_port = 0 if os.environ.get("JETLOOM_BENCH_METRICS") == "1" else None
    affinity = os.environ.get("JETLOOM_BENCH_AFFINITY", "1") != "0"
    run_loop(
        lambda: serve(target, settings, prefix=prefix, grace=2.0, metrics_port=metrics_port, affinity=affinity),
        uvloop=uvloop,
    )


@app.command()
def limit(nats_url: Annotated[str, typer.Option("--nats")], uvloop: UvloopOpt = True) -> None:
    """The hand-written nats-py steps of the limit baseline."""
    from .limit import serve

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await serve(
            nats_url, stop, ready=lambda: print(f"limit worker ready pid={os.getpid()}", flush=True)
        )

    run_loop(main, uvloop=uvloop)


@app.command("peer-chain")
def peer_chain(runs: int, inflight: int, warmup: int = 20, uvloop: UvloopOpt = True) -> None:
    """The peer's chain: prints ``{"latencies_s", "latency", "completed", "wall_s", "cpu_s"}``."""
    from .peer import measure_chain

    _print_json(
        run_loop(lambda: measure_chain(runs=runs, inflight=inflight, warmup=warmup), uvloop=uvloop)
    )


@app.command("peer-fan")
def peer_fan(n: int, reps: int, uvloop: UvloopOpt = True) -> None:
    """The peer's fan: prints ``{"walls_s", "completed", "cpu_s"}``."""
    from .peer import measure_fan

    _print_json(run_loop(lambda: measure_fan(n=n, reps=reps), uvloop=uvloop))


@app.command()
def docloop(root: str, db: str) -> None:
    """The plain docindex loop over ROOT into DB: prints its counts, ``wall_s`` and ``cpu_s``."""
    from .scenarios.docindex import plain_loop

    _print_json(plain_loop(root, db))


if __name__ == "__main__":
    app()
