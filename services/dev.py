"""``jetloom dev``: an embedded nats-server, the control plane and the workers, in one process tree.

Reads a deployment file (``services.launcher``; default ``./jetloom.toml``), starts everything,
prints one line ``jetloom dev ready api=<url> nats=<url> workers=<n>`` (and ``monitor=<url>``, the
embedded server's HTTP monitoring: ``/varz``, ``/jsz``, ``/healthz``) and runs until SIGINT or
SIGTERM, then stops the workers (SIGTERM, in-flight steps get their grace), the control plane and
the server, in that order, and returns (the command exits 0).

It supervises the workers (``Launcher(supervise=True)``): one that dies is logged in one line
(which, its exit code or signal) and started again with exponential backoff. The embedded server's
store is a temporary directory removed at exit unless ``data_dir`` (or ``store_dir``, or the file's
``[nats] store_dir``) names one: nothing is left in the working directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console

from .launcher import Deployment, Launcher, ServiceSpec, load_deployment
from .natsserver import EmbeddedNats, check_sync_interval

__all__ = ["DEFAULT_FILE", "run_dev"]

DEFAULT_FILE = Path("jetloom.toml")

err = Console(stderr=True)


def _deployment(path: Path | None, workflows: list[str]) -> Deployment:
    if path is None and DEFAULT_FILE.exists():
        path = DEFAULT_FILE
    if path is not None:
        dep = load_deployment(path)
    elif workflows:
        dep = Deployment(root=str(Path.cwd()))
    else:
        raise FileNotFoundError(
            f"no deployment file: pass one, create {DEFAULT_FILE}, or name workflows with --workflow"
        )
    for target in workflows:
        name = target.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        dep.services.append(ServiceSpec(name=name, workflow=target))
    return dep


async def run_dev(
    path: Path | None,
    *,
    workflows: list[str],
    port: int | None = None,
    nats_port: int | None = None,
    store_dir: Path | None = None,
    data_dir: Path | None = None,
    nats: dict[str, Any] | None = None,
    sync: str | None = None,
    verbose: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a deployment with an embedded server until ``stop`` is set or a signal arrives.

    ``nats`` holds ``NatsSettings`` fields given on the command line or in the environment
    (None values ignored); they win over the file's ``[nats]`` table. With a ``url`` there or
    here, no embedded server starts.

    ``sync`` (``"always"`` or a duration such as ``"2m"``) is the embedded server's JetStream
    ``sync_interval``; it wins over the file's ``[nats] sync``.

    The embedded server stores its streams in ``store_dir``, else ``data_dir/nats``, else the
    file's ``[nats] store_dir`` (relative to its ``root``), else a temporary directory removed
    when it stops.

    Raises:
        FileNotFoundError / ValueError: no usable deployment file (the message says why), a bad
            ``sync``, or ``sync`` with an existing server (``url``), whose own config sets it.
        engine.jetstream.connection.NatsConnectError: NATS unreachable, or it refused the credentials.
        services.launcher.WorkerStartError: a worker exited before it was ready.
        engine.jetstream.connection.NatsConnectionClosed / NatsConnectError: the control plane's
            connection was closed for good and could not be rebuilt.
    """
    dep = _deployment(path, workflows)
    if port is not None:
        dep.control_plane.port = port
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    launched: list[Launcher] = []  # (set once the server is up)

    def interrupted() -> None:
        for launcher in launched:
            launcher.stopping()  # a terminal's Ctrl-C reaches the workers too: no restarts now
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupted)

    overrides = {k: v for k, v in (nats or {}).items() if v is not None}
    if sync is not None:
        overrides["sync"] = check_sync_interval(sync)
    spec = msgspec.structs.replace(dep.nats, **overrides)
    server: EmbeddedNats | None = None
    nats_url = spec.url
    if nats_url is None:
        if store_dir is None and data_dir is not None:
            store_dir = data_dir / "nats"
        if store_dir is None and dep.nats.store_dir is not None:
            store_dir = Path(dep.root or ".") / dep.nats.store_dir
        server = EmbeddedNats(
            port=dep.nats.port if nats_port is None else nats_port,
            store_dir=store_dir,  # None: a temporary directory, removed when it stops
            sync_interval=spec.sync,
            extra_args=["-m", "-1"],  # HTTP monitoring on a free port of the same host
        )
        await server.astart()
        nats_url = server.url
    elif sync is not None:
        raise ValueError(
            f"--sync applies to the embedded server; {spec.url} sets sync_interval in its own config"
        )

    def show(pid: int, line: str) -> None:
        if verbose:
            err.print(f"[dim]worker {pid}:[/] {line}", markup=True, highlight=False)

    settings = spec.settings(nats_url)
    launcher = Launcher(settings, cwd=dep.root, on_line=show, supervise=True)
    launched.append(launcher)
    if stop.is_set():
        launcher.stopping()
    try:
        cp = await launcher.launch(dep)
        api = cp.url if cp is not None else "-"
        for s in dep.services:
            err.print(f"service [bold]{s.name}[/]: {s.workflow} x{s.replicas}", highlight=False)
        monitors = server.ports.get("monitoring", []) if server is not None else []
        monitor = monitors[0] if monitors else None
        print(
            f"jetloom dev ready api={api} nats={settings.display_url} workers={len(launcher.workers)}"
            + (f" monitor={monitor}" if monitor else ""),
            flush=True,
        )
        if cp is not None:
            await cp.control_plane.wait_stopped(stop)  # raises when its NATS connection is lost
        else:
            await stop.wait()
    finally:
        err.print("stopping workers, control plane and nats-server ...")
        await launcher.stop()
        if server is not None:
            await server.astop()
        sys.stdout.flush()
