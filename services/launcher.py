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
    api_tokens = "tokens.toml"  # optional: API tokens (services.control.auth); relative to this file

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
import logging
import os
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import uvicorn

from engine import WaitStrategy, wait_exponential
from engine.jetstream.connection import NatsSettings
from engine.jetstream.log import DEFAULT_ACK_WAIT, check_lease

from .nats_options import environ
from .supervisor import ChildProcess, NotReady, WorkerStartError, python_env

__all__ = [
    "ControlPlaneServer",
    "Deployment",
    "Launcher",
    "ServiceSpec",
    "WorkerProcess",
    "WorkerStartError",
    "describe_exit",
    "load_deployment",
]

logger = logging.getLogger("jetloom.launcher")

READY_PREFIX = "jetloom worker ready"
READY_TIMEOUT = 60.0  # seconds a worker may take to start consuming
STOP_TIMEOUT = 20.0  # seconds a worker may take to exit after SIGTERM (its grace is 10 s)
TAIL_LINES = 60  # a worker's output lines kept for WorkerStartError and output()
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Seconds before restart ``n`` (0 first) of a worker that died: 0.5, 1, 2, ... at most 30.
RESTART_BACKOFF: WaitStrategy = wait_exponential(multiplier=0.5, exp_base=2, max=30)
#: Seconds a restarted worker must stay up for its next death to count as a first one again.
STABLE_AFTER = 60.0


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
            try:
                check_lease(ack, self.progress_heartbeat_s)
            except ValueError as exc:
                raise ValueError(f"service {self.name!r}: {exc}") from None


class NatsSpec(NatsSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[nats]``: ``url`` of an existing server (or several, comma-separated), or (``jetloom
    dev``, no ``url``) the embedded server's ``port`` (0 = any free port; default 4222),
    ``store_dir`` (relative to ``root``; default: a temporary directory removed when the server
    stops) and ``sync`` (JetStream ``sync_interval``: ``"always"`` fsyncs every write
    before its ack; default the config's, 2 min); and every other ``NatsSettings`` field (``replicas``, credentials, TLS,
    ``connect_attempts``, ``connect_wait_s``)."""

    url: str | None = None  # type: ignore[assignment]  # narrows NatsSettings.url: a deployment file may leave it out
    port: int = 4222
    store_dir: str | None = None
    sync: str | None = None  # the embedded server's JetStream sync_interval ("always" or "2m")

    def __post_init__(self) -> None:
        super().__post_init__()
        from .natsserver import check_sync_interval  # (raises ValueError, reported as the file's)

        check_sync_interval(self.sync)

    def settings(self, url: str | None = None) -> NatsSettings:
        """The connection settings, with ``url`` (an embedded server's) in place of the file's.

        Raises:
            ValueError: neither the file nor the caller names a server.
        """
        fields = {f: getattr(self, f) for f in NatsSettings.__struct_fields__}
        fields["url"] = url or self.url
        if fields["url"] is None:
            raise ValueError("[nats] names no url and no embedded server was started")
        return NatsSettings(**fields)


class ControlPlaneSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[control_plane]``: ``host`` (default 127.0.0.1), ``port`` (default 8000; 0 = any) and
    ``api_tokens``, a tokens file (``services.control.auth``; relative to the deployment file;
    default: env ``JETLOOM_API_TOKENS_FILE``, and ``JETLOOM_API_TOKEN`` adds one token)."""

    host: str = "127.0.0.1"
    port: int = 8000
    enabled: bool = True
    api_tokens: str | None = None


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
    tokens = dep.control_plane.api_tokens
    if tokens is not None and not Path(tokens).is_absolute():
        dep.control_plane.api_tokens = str(p.resolve().parent / tokens)
    root = Path(dep.root) if dep.root else p.resolve().parent
    if not root.is_absolute():
        root = (p.resolve().parent / root).resolve()
    dep.root = str(root)
    return dep


# ---- processes --------------------------------------------------------------------------------


class WorkerProcess:
    """A ``jetloom worker`` child process for asyncio callers: a supervised process
    (``services.supervisor.ChildProcess``) whose last output lines are kept.

    Create with ``await WorkerProcess.start(target, nats_url, ...)``; ``await w.ready`` gives the
    ready line. ``on_line`` (if given) is called with ``(pid, line)`` for every output line, in
    the event loop that started the worker.

    Attributes:
        child: the supervised process (``pid``, ``signal()`` for SIGSTOP/SIGCONT, ``lines``).
        ready: resolves to the ready line; fails with ``WorkerStartError`` if the worker exits first.
    """

    def __init__(
        self, child: ChildProcess, on_line: Callable[[int, str], None] | None = None
    ) -> None:
        self.child = child
        self.on_line = on_line
        self.ready: asyncio.Future[str] = asyncio.ensure_future(self._ready())

    @classmethod
    async def start(
        cls,
        target: str,
        nats: str | NatsSettings,
        *,
        args: Sequence[str] = (),
        cwd: str | Path | None = None,
        on_line: Callable[[int, str], None] | None = None,
    ) -> WorkerProcess:
        """Start ``python -m services.cli worker TARGET ARGS`` with ``cwd`` (default: the current
        directory) and the repository on ``PYTHONPATH``; the NATS settings (``nats``: URLs or
        ``NatsSettings``) travel in its environment (``services.nats_options.ENV``), so no secret
        shows on its command line."""
        settings = nats if isinstance(nats, NatsSettings) else NatsSettings(url=nats)
        workdir = str(cwd or os.getcwd())
        child = ChildProcess(
            [sys.executable, "-m", "services.cli", "worker", target, *args],
            env=python_env(workdir, REPO_ROOT, extra=environ(settings)),
            cwd=workdir,
            ready=READY_PREFIX,
            tail=TAIL_LINES,
        )
        if on_line is not None:
            child.on_line = _in_loop(asyncio.get_running_loop(), lambda line: on_line(child.pid, line))
        return cls(child.start(), on_line)

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The process (``returncode`` is None while it runs)."""
        return self.child.proc

    async def _ready(self) -> str:
        try:
            return await self.child.await_ready(timeout=None)
        except NotReady as exc:
            raise WorkerStartError(exc.pid, exc.output, exc.returncode) from None

    def output(self) -> str:
        """Its last output lines, newline-separated."""
        return self.child.output()

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:  # noqa: ASYNC109
        """The ready line, once printed.

        Raises:
            WorkerStartError: the worker exited first.
            TimeoutError: ``timeout`` seconds passed first.
        """
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self.ready)

    async def wait(self) -> int:
        """Wait until the worker exits (its output read); its exit code."""
        return await self.child.await_exit()

    def restart(self) -> None:
        """Start the command again after it exited (same arguments, environment and output
        callback; ``pid`` becomes the new process'); ``ready`` resolves anew.

        Raises:
            RuntimeError: it still runs.
            OSError: the command could not be executed.
        """
        self.child.start()
        if not self.ready.done():
            self.ready.cancel()
        elif not self.ready.cancelled():
            self.ready.exception()  # mark retrieved
        self.ready = asyncio.ensure_future(self._ready())

    def kill(self) -> None:
        """SIGKILL: no cleanup; its unacked triggers are redelivered to other processes."""
        self.child.kill()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:  # noqa: ASYNC109
        """SIGTERM, wait for a graceful exit, then SIGKILL; returns the exit code."""
        code = await self.child.astop(timeout)
        if not self.ready.done():
            self.ready.cancel()
        elif not self.ready.cancelled():
            self.ready.exception()  # mark retrieved
        return code


def describe_exit(code: int) -> str:
    """How a process ended, for a log line: ``exited with code 3``, ``was killed by SIGKILL``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def _in_loop(loop: asyncio.AbstractEventLoop, call: Callable[[str], None]) -> Callable[[str], None]:
    """``call`` run in ``loop``'s thread (the supervisor reads output in a thread of its own);
    lines arriving after the loop closed are dropped."""

    def deliver(line: str) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(call, line)

    return deliver


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: whoever embeds it owns SIGINT/SIGTERM (uvicorn
    would otherwise take them over and re-raise them after its own shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlPlaneServer:
    """The control plane served by uvicorn inside this event loop.

    Args:
        nats_url / host / port: where it connects (URLs or ``NatsSettings``) and listens (port
            0 = any free port).
        sock: a bound, listening socket to serve on instead of ``host``/``port``. The server
            serves a duplicate of it, so the caller's socket stays open (and the address keeps
            accepting connections into its backlog) after ``stop()``: a control plane restarted
            on it is reached at the same address, with no window in which another process could
            take the port.
        shutdown_grace: seconds open requests (SSE streams) get on ``stop()`` (default 5).
        log_level: uvicorn's log level (default ``warning``).
        access_log: uvicorn's access log, one line per request (default off: at hundreds of
            requests a second its formatting and writing is a large share of the process's CPU;
            ``jetloom control-plane --verbose`` turns it on).
        **app_options: passed to ``create_app``.

    Attributes:
        url: ``http://host:port`` once started (the real port when 0 was asked for).
    """

    def __init__(
        self,
        nats_url: str | NatsSettings,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        sock: socket.socket | None = None,
        shutdown_grace: float = 5.0,
        log_level: str = "warning",
        access_log: bool = False,
        **app_options: Any,
    ) -> None:
        from .control.asgi import create_app

        self.sock = sock

        self.app = create_app(nats_url, **app_options)
        self.control_plane = self.app.state.control_plane
        self.server = _EmbeddedUvicorn(
            uvicorn.Config(
                self.app,
                host=host,
                port=port,
                log_level=log_level,
                access_log=access_log,
                lifespan="on",
                # open SSE streams would hold shutdown forever; they are cut after this many
                # seconds and clients resume elsewhere with Last-Event-ID
                timeout_graceful_shutdown=shutdown_grace,  # type: ignore[arg-type]  # uvicorn's asyncio.timeout takes float seconds; its annotation says int
            )
        )
        self.host = host
        self.url = ""
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> str:  # noqa: ASYNC109
        """Serve in a background task; return the URL once it accepts connections.

        Raises:
            engine.jetstream.connection.NatsConnectError: NATS unreachable or refused the credentials
                (connected before uvicorn starts, so the error is raised as it is).
            RuntimeError: uvicorn exited during startup (e.g. the port is taken).
        """
        await self.control_plane.start()
        sockets = [self.sock.dup()] if self.sock is not None else None
        self._task = asyncio.create_task(self.server.serve(sockets=sockets), name="jetloom:control-plane")
        try:
            async with asyncio.timeout(timeout):
                while not self.server.started:
                    if self._task.done():
                        exc = self._task.exception() if not self._task.cancelled() else None
                        raise RuntimeError(f"the control plane did not start: {exc!r}")
                    await asyncio.sleep(0.02)
        except BaseException:
            await self.control_plane.stop()
            raise
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
        nats_url: the NATS server every process uses (URLs, or ``NatsSettings`` with credentials
            and replicas).
        cwd: directory worker processes run in and import workflows from (default: current).
        on_line: called with ``(pid, line)`` for every worker output line (default: ignored).
        supervise: restart a worker process that exits (after it was ready) until ``stop``:
            each death is logged on the ``jetloom.launcher`` logger (one warning line: which
            worker, its exit code or signal, the delay), then it is started again after
            ``backoff(n)`` seconds, ``n`` counting its deaths since it last stayed up
            ``stable_after`` seconds (default: no restarts).
        backoff: seconds before restart ``n`` (0 first); default ``RESTART_BACKOFF``
            (exponential: 0.5 s doubling up to 30 s).
        stable_after: seconds up after which ``n`` starts from 0 again (default 60).
    """

    def __init__(
        self,
        nats_url: str | NatsSettings,
        *,
        cwd: str | Path | None = None,
        on_line: Callable[[int, str], None] | None = None,
        supervise: bool = False,
        backoff: WaitStrategy = RESTART_BACKOFF,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        self.nats_url = nats_url
        self.cwd = cwd
        self.on_line = on_line
        self.supervise = supervise
        self.backoff = backoff
        self.stable_after = stable_after
        self.control_planes: list[ControlPlaneServer] = []
        self.workers: list[WorkerProcess] = []
        self.restarts = 0  # worker restarts so far (supervise)
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

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
            WorkerStartError: a worker exited before it was ready (its output is on the error).
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
        for i in range(replicas):
            w = await WorkerProcess.start(
                workflow, self.nats_url, args=args, cwd=self.cwd, on_line=self.on_line
            )
            self.workers.append(w)
            started.append(w)
            if self.supervise:
                label = f"{service or workflow}[{i}]" if replicas > 1 else (service or workflow)
                self._watchers.append(asyncio.create_task(self._watch(w, label), name=f"jetloom:watch {label}"))
        if wait:
            await asyncio.gather(*(w.wait_ready() for w in started))
        return started

    def stopping(self) -> None:
        """Mark the launcher as stopping: a worker exiting from now on is not restarted (call
        it from a signal handler before ``stop``, since a terminal's Ctrl-C reaches the
        workers too)."""
        self._stopping = True

    async def _watch(self, w: WorkerProcess, label: str) -> None:
        """Restart ``w`` whenever it exits after it was ready, with backoff (``supervise``)."""
        loop = asyncio.get_running_loop()
        deaths = 0
        try:
            await asyncio.shield(w.ready)
        except WorkerStartError:
            return  # a worker that never started is the caller's failure, not restarted
        while True:
            up_since = loop.time()
            code = await w.wait()
            if self._stopping:
                return
            if loop.time() - up_since >= self.stable_after:
                deaths = 0
            delay = self.backoff(deaths)
            deaths += 1
            logger.warning(
                "worker %s (pid %d) %s; restarting in %.1f s", label, w.pid, describe_exit(code), delay
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            old = w.pid
            try:
                w.restart()
            except OSError as exc:
                logger.error("worker %s could not be started again: %s", label, exc)
                return
            self.restarts += 1
            try:
                await w.wait_ready()
            except (WorkerStartError, TimeoutError) as exc:
                logger.warning("worker %s (pid %d) did not start again: %s", label, w.pid, exc)
                if w.child.alive:
                    await w.child.astop()
                continue
            logger.info("worker %s restarted: pid %d (was %d)", label, w.pid, old)

    async def launch(self, deployment: Deployment) -> ControlPlaneServer | None:
        """Start a deployment's control plane (if enabled; its API tokens from
        ``[control_plane] api_tokens`` and the environment) and services.

        Raises:
            FileNotFoundError / ValueError: an unusable API tokens file.
        """
        from .control.auth import resolve_auth

        cp = None
        if deployment.control_plane.enabled:
            cp = await self.launch_control_plane(
                host=deployment.control_plane.host,
                port=deployment.control_plane.port,
                auth=resolve_auth(deployment.control_plane.api_tokens),
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
        """Stop every worker (SIGTERM, then SIGKILL after 20 s; none is restarted from now on)
        and control plane."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers.clear()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
        self.workers.clear()
        for cp in self.control_planes:
            await cp.stop()
        self.control_planes.clear()
