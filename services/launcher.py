"""Launching jetloom's processes from code: the control plane, workflow services, or a whole
deployment described in TOML (what ``jetloom dev`` runs).

::

    async with Launcher(nats_url) as launcher:
        cp = await launcher.launch_control_plane(port=8000)
        await launcher.launch_service("myapp.flows:Indexer", service="indexer", replicas=2)
        ...                                   # Client(cp.url) drives it

A deployment file::

    [nats]                      # omit for an embedded server (``jetloom dev``)
    url = "nats://127.0.0.1:4222"

    [control_plane]
    host = "127.0.0.1"
    port = 8000

    [[services]]
    name = "indexer"
    workflow = "myapp.flows:Indexer"
    replicas = 2
    num_workers = 8             # optional: overrides every step's num_workers
    ack_wait_s = 6.0            # optional: seconds until a dead worker's triggers are redelivered
    progress_heartbeat_s = 2.0  # optional: seconds between a running step's in-progress acks
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tomllib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import uvicorn

from engine.log.jetstream import DEFAULT_ACK_WAIT, DEFAULT_PROGRESS_HEARTBEAT, check_lease

__all__ = [
    "ControlPlaneServer",
    "Deployment",
    "Launcher",
    "ServiceSpec",
    "WorkerProcess",
    "load_deployment",
]

READY_PREFIX = "jetloom worker ready"
READY_TIMEOUT = 60.0  # seconds a worker may take to start consuming
STOP_TIMEOUT = 20.0  # seconds a worker may take to exit after SIGTERM (its grace is 10 s)
REPO_ROOT = Path(__file__).resolve().parents[1]


# ---- deployment file ----------------------------------------------------------------------------


class ServiceSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[services]]`` table: ``name``, ``workflow`` (``module:Class``), ``replicas``
    (processes, default 1), ``num_workers`` (per-step concurrency override), ``steps`` (run only
    these), ``ack_wait_s`` and ``progress_heartbeat_s`` (the workers' ``--ack-wait`` and
    ``--progress-heartbeat``, seconds; default 6 and 2, the heartbeat shorter)."""

    name: str
    workflow: str
    replicas: int = 1
    num_workers: int | None = None
    steps: list[str] | None = None
    ack_wait_s: float | None = None
    progress_heartbeat_s: float | None = None

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"service {self.name!r}: replicas must be >= 0")
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError(f"service {self.name!r}: num_workers must be >= 1")
        if self.ack_wait_s is not None or self.progress_heartbeat_s is not None:
            ack = self.ack_wait_s if self.ack_wait_s is not None else DEFAULT_ACK_WAIT.total_seconds()
            beat = self.progress_heartbeat_s
            if beat is None:
                beat = min(DEFAULT_PROGRESS_HEARTBEAT.total_seconds(), ack / 3)
            try:
                check_lease(ack, beat)
            except ValueError as exc:
                raise ValueError(f"service {self.name!r}: {exc}") from None


class NatsSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[nats]``: ``url`` of an existing server, or (``jetloom dev``) the embedded server's
    ``port`` (0 = any free port; default 4222) and ``store_dir``."""

    url: str | None = None
    port: int = 4222
    store_dir: str = ".jetloom/nats"


class ControlPlaneSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[control_plane]``: ``host`` (default 127.0.0.1) and ``port`` (default 8000; 0 = any)."""

    host: str = "127.0.0.1"
    port: int = 8000
    enabled: bool = True


class Deployment(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A deployment file's contents. ``root`` is the directory workflow modules import from
    (default: the file's directory)."""

    services: list[ServiceSpec] = []
    nats: NatsSpec = msgspec.field(default_factory=NatsSpec)
    control_plane: ControlPlaneSpec = msgspec.field(default_factory=ControlPlaneSpec)
    root: str | None = None


def load_deployment(path: str | Path) -> Deployment:
    """Read a deployment TOML file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not valid TOML or does not match the schema (the message names
            the offending key).
    """
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML: {exc}") from None
    try:
        dep = msgspec.convert(raw, Deployment)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"{p}: {exc}") from None
    root = Path(dep.root) if dep.root else p.resolve().parent
    if not root.is_absolute():
        root = (p.resolve().parent / root).resolve()
    dep.root = str(root)
    return dep


# ---- processes --------------------------------------------------------------------------------


class WorkerProcess:
    """A ``jetloom worker`` child process; its output is drained into a tail buffer.

    Create with ``await WorkerProcess.start(target, nats_url, ...)``; ``await w.ready`` gives the
    ready line. ``on_line`` (if given) is called with ``(pid, line)`` for every output line.
    """

    def __init__(
        self, proc: asyncio.subprocess.Process, on_line: Callable[[int, str], None] | None = None
    ) -> None:
        self.proc = proc
        self.on_line = on_line
        self.tail: deque[str] = deque(maxlen=60)
        self.ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._drain = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls,
        target: str,
        nats_url: str,
        *,
        args: Sequence[str] = (),
        cwd: str | Path | None = None,
        on_line: Callable[[int, str], None] | None = None,
    ) -> WorkerProcess:
        """Start ``python -m services.cli worker TARGET --nats URL ARGS`` with ``cwd`` (default:
        the current directory) and the repository on ``PYTHONPATH``."""
        workdir = str(cwd or os.getcwd())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [workdir, str(REPO_ROOT), env.get("PYTHONPATH")])
        )
        env["PYTHONUNBUFFERED"] = "1"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "worker",
            target,
            "--nats",
            nats_url,
            *args,
            cwd=workdir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc, on_line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            self.tail.append(text)
            if self.on_line is not None:
                self.on_line(self.proc.pid, text)
            if text.startswith(READY_PREFIX) and not self.ready.done():
                self.ready.set_result(text)
        if not self.ready.done():
            self.ready.set_exception(
                RuntimeError(f"worker {self.proc.pid} exited before it was ready:\n{self.output()}")
            )

    def output(self) -> str:
        return "\n".join(self.tail)

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self.ready)

    def kill(self) -> None:
        """SIGKILL: no cleanup; its unacked triggers are redelivered to other processes."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:  # noqa: ASYNC109
        """SIGTERM, wait for a graceful exit, then SIGKILL; returns the exit code."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
            except TimeoutError:
                self.kill()
                await self.proc.wait()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self._drain
        if not self.ready.done():
            self.ready.cancel()
        elif not self.ready.cancelled():
            self.ready.exception()  # mark retrieved
        return self.proc.returncode if self.proc.returncode is not None else -1


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: whoever embeds it owns SIGINT/SIGTERM (uvicorn
    would otherwise take them over and re-raise them after its own shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlPlaneServer:
    """The control plane served by uvicorn inside this event loop.

    Args:
        nats_url / host / port: where it connects and listens (port 0 = any free port).
        shutdown_grace: seconds open requests (SSE streams) get on ``stop()`` (default 5).
        log_level: uvicorn's log level (default ``warning``).
        **app_options: passed to ``create_app``.

    Attributes:
        url: ``http://host:port`` once started (the real port when 0 was asked for).
    """

    def __init__(
        self,
        nats_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        shutdown_grace: float = 5.0,
        log_level: str = "warning",
        **app_options: Any,
    ) -> None:
        from .control.app import create_app

        self.app = create_app(nats_url, **app_options)
        self.server = _EmbeddedUvicorn(
            uvicorn.Config(
                self.app,
                host=host,
                port=port,
                log_level=log_level,
                lifespan="on",
                # open SSE streams would hold shutdown forever; they are cut after this many
                # seconds and clients resume elsewhere with Last-Event-ID
                timeout_graceful_shutdown=shutdown_grace,
            )
        )
        self.host = host
        self.url = ""
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> str:  # noqa: ASYNC109
        """Serve in a background task; return the URL once it accepts connections.

        Raises:
            RuntimeError: uvicorn exited during startup (e.g. the port is taken, NATS unreachable).
        """
        self._task = asyncio.create_task(self.server.serve(), name="jetloom:control-plane")
        async with asyncio.timeout(timeout):
            while not self.server.started:
                if self._task.done():
                    exc = self._task.exception() if not self._task.cancelled() else None
                    raise RuntimeError(f"the control plane did not start: {exc!r}")
                await asyncio.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task


class Launcher:
    """Starts and stops the control plane and workflow services (worker processes).

    Args:
        nats_url: the NATS server every process uses.
        cwd: directory worker processes run in and import workflows from (default: current).
        on_line: called with ``(pid, line)`` for every worker output line (default: ignored).
    """

    def __init__(
        self,
        nats_url: str,
        *,
        cwd: str | Path | None = None,
        on_line: Callable[[int, str], None] | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.cwd = cwd
        self.on_line = on_line
        self.control_planes: list[ControlPlaneServer] = []
        self.workers: list[WorkerProcess] = []

    async def __aenter__(self) -> Launcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def launch_control_plane(
        self, *, host: str = "127.0.0.1", port: int = 8000, **app_options: Any
    ) -> ControlPlaneServer:
        """Serve a control plane (in this process); returns it once it accepts connections."""
        cp = ControlPlaneServer(self.nats_url, host=host, port=port, **app_options)
        await cp.start()
        self.control_planes.append(cp)
        return cp

    async def launch_service(
        self,
        workflow: str,
        *,
        service: str | None = None,
        replicas: int = 1,
        num_workers: int | None = None,
        steps: Sequence[str] | None = None,
        wait: bool = True,
        ack_wait_s: float | None = None,
        progress_heartbeat_s: float | None = None,
    ) -> list[WorkerProcess]:
        """Start ``replicas`` worker processes serving ``workflow`` (``module:Class``) under the
        service name ``service`` (default: the workflow's name); wait until each is consuming.
        ``ack_wait_s`` / ``progress_heartbeat_s``: the workers' ``--ack-wait`` and
        ``--progress-heartbeat`` (default: the worker's, 6 s and 2 s).

        Raises:
            RuntimeError: a worker exited before it was ready (its output is in the message).
        """
        args: list[str] = []
        if service:
            args += ["--service", service]
        if num_workers is not None:
            args += ["--num-workers", str(num_workers)]
        if ack_wait_s is not None:
            args += ["--ack-wait", repr(float(ack_wait_s))]
        if progress_heartbeat_s is not None:
            args += ["--progress-heartbeat", repr(float(progress_heartbeat_s))]
        for s in steps or ():
            args += ["--step", s]
        started = []
        for _ in range(replicas):
            w = await WorkerProcess.start(
                workflow, self.nats_url, args=args, cwd=self.cwd, on_line=self.on_line
            )
            self.workers.append(w)
            started.append(w)
        if wait:
            await asyncio.gather(*(w.wait_ready() for w in started))
        return started

    async def launch(self, deployment: Deployment) -> ControlPlaneServer | None:
        """Start a deployment's control plane (if enabled) and services."""
        cp = None
        if deployment.control_plane.enabled:
            cp = await self.launch_control_plane(
                host=deployment.control_plane.host, port=deployment.control_plane.port
            )
        for s in deployment.services:
            await self.launch_service(
                s.workflow,
                service=s.name,
                replicas=s.replicas,
                num_workers=s.num_workers,
                steps=s.steps,
                ack_wait_s=s.ack_wait_s,
                progress_heartbeat_s=s.progress_heartbeat_s,
            )
        return cp

    async def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after 20 s) and control plane."""
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
        self.workers.clear()
        for cp in self.control_planes:
            await cp.stop()
        self.control_planes.clear()
