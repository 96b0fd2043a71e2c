"""Connections that never stay broken (issue 16, part 3): bounded start-up attempts, refused
credentials, and a connection nats-py closes for good after a server ``-ERR``.

The ``-ERR`` comes from ``ErrProxy``, a TCP proxy in front of a real nats-server that forwards
bytes both ways and, when told, sends ``-ERR 'Unknown Protocol Operation'`` to the client side
and closes it, as the server itself does after a protocol error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from engine.jetstream.connection import NatsConnectError, NatsSettings, open_connection
from services.client import Client
from services.launcher import ControlPlaneServer
from services.launcher import WorkerProcess as AsyncWorkerProcess
from services.nats_client import NatsClient
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually
from tests.workflows import Chain3

ROOT = Path(__file__).resolve().parents[2]
CHAIN = "tests.workflows:Chain3"
ERR = b"-ERR 'Unknown Protocol Operation'\r\n"


async def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str, float]:
    """Run ``python -m services.cli ARGS``; (exit code, stdout, stderr, seconds)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode(), time.monotonic() - started


@pytest.fixture
def closed_port() -> AsyncIterator[int]:
    """A port where nothing listens: a socket bound (never listening) for the test's duration,
    so no other process can take the port meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# ---- start-up -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["worker", CHAIN], ["control-plane", "--port", "0"]], ids=["worker", "control-plane"]
)
async def test_unreachable_nats_exits_2_after_the_configured_attempts(
    closed_port: int, command: list[str]
) -> None:
    """Exit code 2 and a hint line (issue 19: a URL that does not answer is a usage failure)."""
    url = f"nats://someone:hunter2@127.0.0.1:{closed_port}"
    code, out, err, seconds = await cli(
        *command, "--nats", url, "--connect-attempts", "2", "--connect-wait", "0.2"
    )
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    attempts = [line for line in lines if "NATS connect attempt" in line]
    assert [("1/2" in a, "2/2" in a) for a in attempts] == [(True, False), (False, True)], err
    last, hint = lines[-2:]
    assert last.startswith(f"jetloom {command[0]}: cannot connect to NATS at nats://127.0.0.1:{closed_port}")
    assert "connection refused" in last and "tried 2 times" in last
    assert hint.startswith("  hint: is nats-server running there?") and "--nats" in hint, err
    assert lines == [*attempts, last, hint], err  # nothing else: no traceback, no nats-py error lines
    assert "hunter2" not in err and "someone" not in err  # the URL's credentials are never shown
    assert seconds < 20, seconds  # interpreter start-up included; the attempts take ~0.2 s


async def test_debug_shows_the_traceback_of_an_expected_failure(closed_port: int) -> None:
    code, _, err, _ = await cli(
        "worker", CHAIN, "--nats", f"nats://127.0.0.1:{closed_port}", "--connect-attempts", "1", "--debug"
    )
    assert code == 2
    assert "Traceback" in err and "NatsConnectError" in err
    assert err.strip().splitlines()[-2].startswith("jetloom worker: cannot connect to NATS")


@pytest.fixture
async def password_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    conf = tmp_path / "auth.conf"
    conf.write_text('jetstream: enabled\nauthorization { user: "jl", password: "right-one" }\n')
    async with EmbeddedNats(port=0, store_dir=tmp_path / "store", config=conf) as server:
        yield server


@pytest.mark.parametrize(
    "command", [["worker", CHAIN], ["control-plane", "--port", "0"]], ids=["worker", "control-plane"]
)
async def test_a_wrong_password_exits_1_at_once_with_one_line(
    password_server: EmbeddedNats, command: list[str]
) -> None:
    code, out, err, _ = await cli(
        *command,
        "--nats",
        password_server.url,
        "--nats-user",
        "jl",
        "--connect-attempts",
        "5",
        "--connect-wait",
        "10",  # a retry would take 10 s: the bound below shows there was none
        env={"JETLOOM_NATS_PASSWORD": "wrong-one"},
    )
    assert code == 1, (out, err)
    assert err.strip().splitlines() == [
        f"jetloom {command[0]}: NATS at {password_server.url} refused the connection: Authorization Violation"
    ]
    assert "wrong-one" not in err


async def test_open_connection_refused_is_permanent_and_right_password_connects(
    password_server: EmbeddedNats,
) -> None:
    started = time.monotonic()
    with pytest.raises(NatsConnectError) as info:
        await open_connection(
            NatsSettings(url=password_server.url, user="jl", password="nope", connect_wait_s=5)
        )
    assert info.value.permanent and info.value.attempts == 1
    assert time.monotonic() - started < 4
    nc = await open_connection(NatsSettings(url=password_server.url, user="jl", password="right-one"))
    try:
        assert nc.is_connected
    finally:
        await nc.close()


# ---- a connection closed for good ---------------------------------------------------------------


class ErrProxy:
    """A TCP proxy to ``upstream`` (host, port) on 127.0.0.1, port 0. ``inject()`` sends ``ERR`` to
    every client connection and closes it; ``accepted`` counts client connections."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.accepted = 0
        self._clients: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> ErrProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._clients:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._clients.append(writer)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if dst.is_closing():
                        break
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for t in (
            asyncio.create_task(pump(reader, up_writer)),
            asyncio.create_task(pump(up_reader, writer)),
        ):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def inject(self) -> None:
        clients, self._clients = self._clients, []
        for w in clients:
            w.write(ERR)
            with contextlib.suppress(ConnectionError):
                await w.drain()
            w.close()


@pytest.fixture
async def proxy(nats_server: EmbeddedNats) -> AsyncIterator[ErrProxy]:
    async with ErrProxy((nats_server.host, nats_server.port)) as p:
        yield p


async def test_worker_exits_non_zero_with_one_line_when_its_connection_is_closed(
    proxy: ErrProxy,
) -> None:
    w = await AsyncWorkerProcess.start(CHAIN, proxy.url, cwd=ROOT)
    try:
        await w.wait_ready()
        assert proxy.accepted == 1
        await proxy.inject()
        async with asyncio.timeout(30):
            code = await w.wait()
        await w.stop()
    finally:
        w.kill()
    assert code == 1, w.output()
    lines = w.output().splitlines()
    assert not any("Traceback" in line for line in lines), w.output()
    (last,) = [line for line in lines if line.startswith("jetloom worker:")]
    assert last.lower() == (
        f"jetloom worker: the NATS connection to {proxy.url} was closed: Unknown Protocol Operation"
    ).lower(), w.output()


async def test_control_plane_rebuilds_its_connection_and_serves_runs_after(
    proxy: ErrProxy, start_worker: Callable[..., Awaitable[AsyncWorkerProcess]]
) -> None:
    await start_worker(CHAIN)  # straight to the server: only the control plane goes through the proxy
    server = ControlPlaneServer(NatsSettings(url=proxy.url), port=0, shutdown_grace=1.0)
    await server.start()
    try:
        async with Client(server.url) as client:
            assert (await client.run("Chain3", text="a b"))["n"] == 2
            first = server.control_plane.log
            await proxy.inject()

            async def rebuilt() -> bool:
                return proxy.accepted == 2 and server.control_plane.log is not first

            await eventually(rebuilt, timeout=30, what="a new NATS connection")
            assert first is not None and first.nc.is_closed
            assert not server.control_plane.broken.done()
            assert (await client.run("Chain3", text="after the rebuild"))["n"] == 3
            health = await client.health()
            assert health["nats"] is True
    finally:
        await server.stop()


async def test_revoked_password_worker_and_control_plane_exit_1_for_their_supervisor(
    tmp_path: Path,
) -> None:
    """A config reload that changes the password: the server closes both connections with
    'Authorization Violation'; the worker exits 1, the control plane tries to rebuild its
    connection, is refused at once, and exits 1; each with one line, no traceback."""
    auth = tmp_path / "auth.conf"
    auth.write_text('authorization { user: "jl", password: "before" }\n')
    conf = tmp_path / "nats.conf"
    conf.write_text('jetstream: enabled\ninclude "auth.conf"\n')
    env = {"JETLOOM_NATS_USER": "jl", "JETLOOM_NATS_PASSWORD": "before", "PYTHONUNBUFFERED": "1"}
    async with EmbeddedNats(port=0, store_dir=tmp_path / "store", config=conf) as server:
        url = server.url
        procs = {}
        for name, args in (("worker", ["worker", CHAIN]), ("control-plane", ["control-plane", "--port", "0"])):
            procs[name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli", *args, "--nats", server.url,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        try:
            for name, proc in procs.items():
                assert proc.stdout is not None
                async with asyncio.timeout(60):
                    while b" ready " not in (line := await proc.stdout.readline()):
                        assert line, f"{name} exited before it was ready"
            auth.write_text('authorization { user: "jl", password: "after" }\n')
            assert server.pid is not None
            os.kill(server.pid, signal.SIGHUP)  # nats-server reloads its configuration
            results = {}
            for name, proc in procs.items():
                async with asyncio.timeout(30):
                    _, err = await proc.communicate()
                results[name] = (proc.returncode, err.decode())
        finally:
            for proc in procs.values():
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    code, err = results["worker"]
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"jetloom worker: the NATS connection to {url} was closed: Authorization Violation"
    ), err
    code, err = results["control-plane"]
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"jetloom control-plane: NATS at {url} refused the connection: Authorization Violation"
    ), err


async def test_a_server_outage_costs_a_few_lines_and_no_traceback(tmp_path: Path) -> None:
    """nats-py's own error callback logs a traceback per failed reconnect (every 0.5 s); the
    quiet one logs the loss, each distinct error once, and the reconnect."""
    server = EmbeddedNats(port=0, store_dir=tmp_path / "store")
    await server.astart()
    w = await AsyncWorkerProcess.start(CHAIN, server.url, cwd=ROOT)
    try:
        await w.wait_ready()
        server.kill()
        await eventually(_has(w, "reconnecting"), timeout=20, what="the worker notices")
        await asyncio.sleep(3)  # the outage: six reconnect attempts
        await server.astart()
        await eventually(_has(w, "reconnected to"), timeout=20, what="the worker reconnects")
        async with await NatsClient.connect(server.url) as nc:
            handler = await nc.start(Chain3, text="after the outage")
            assert (await asyncio.wait_for(handler, 30))["n"] == 3
        assert w.proc.returncode is None
    finally:
        await w.stop()
        await server.astop()
    lines = w.output().splitlines()
    assert not any("Traceback" in line for line in lines), w.output()
    outage = [line for line in lines if "jetloom.nats" in line or "heartbeat" in line]
    assert 3 <= len(outage) <= 8, w.output()


def _has(w: AsyncWorkerProcess, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(text in line for line in w.output().splitlines())

    return check


async def test_an_attempt_tries_every_url_once_and_a_live_one_suffices(
    closed_port: int, nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    other.bind(("127.0.0.1", 0))
    try:
        dead = f"nats://127.0.0.1:{closed_port},nats://127.0.0.1:{other.getsockname()[1]}"
        with caplog.at_level("WARNING", logger="jetloom.nats"), pytest.raises(NatsConnectError) as info:
            await open_connection(NatsSettings(url=dead, connect_attempts=3, connect_wait_s=0.05))
        assert info.value.attempts == 3 and not info.value.permanent
        assert [r.getMessage().split(" failed")[0] for r in caplog.records] == [
            f"NATS connect attempt {i}/3 to {dead}" for i in (1, 2, 3)
        ]
        caplog.clear()
        # one node of a cluster down: the first attempt goes on to the live one
        with caplog.at_level("WARNING", logger="jetloom.nats"):
            for _ in range(3):  # whichever order nats-py shuffles the URLs into
                nc = await open_connection(
                    NatsSettings(url=f"nats://127.0.0.1:{closed_port},{nats_server.url}", connect_attempts=1)
                )
                assert nc.is_connected
                await nc.close()
        assert caplog.records == []
    finally:
        other.close()
