"""NATS credentials the standard ways (issue 16, part 6), each against a real nats-server that
requires it: user/password, token, NKey seed file, ``.creds`` (operator → account → user JWT
chain), and TLS with a CA file and a client certificate (the server verifies it).

Each credential reaches NATS three ways in one test: a ``jetloom worker`` given flags, a
``jetloom control-plane`` given ``JETLOOM_NATS_*`` environment variables, and a control plane
started from a deployment file's ``[nats]`` table; a run started through each control plane is
completed by the worker. The server refusing a client without the credential shows that it
requires them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nkeys
import pytest

from engine.jetstream.connection import (
    NatsConnectError,
    NatsSettings,
    connection_closed,
    open_connection,
)
from services.client import Client
from services.launcher import Launcher, load_deployment
from services.launcher import WorkerProcess as AsyncWorkerProcess
from services.nats_options import ENV
from services.natsserver import EmbeddedNats
from tests.natsauth import Certificates, JwtChain, NKey

ROOT = Path(__file__).resolve().parents[2]
CHAIN = "tests.workflows:Chain3"

#: ``NatsSettings`` field → the process commands' flag.
FLAGS = {
    "user": "--nats-user",
    "password": "--nats-password",
    "token": "--nats-token",
    "nkey_seed_file": "--nats-nkey",
    "creds_file": "--nats-creds",
    "tls_ca_file": "--nats-tls-ca",
    "tls_cert_file": "--nats-tls-cert",
    "tls_key_file": "--nats-tls-key",
}


def secured(kind: str, d: Path) -> tuple[str, dict[str, str]]:
    """A server configuration requiring ``kind`` and the ``NatsSettings`` fields that meet it."""
    if kind == "user_password":
        return 'authorization { user: "jl-worker", password: "pw-8c1d" }\n', {
            "user": "jl-worker",
            "password": "pw-8c1d",
        }
    if kind == "token":
        return 'authorization { token: "tok-5e9f1a" }\n', {"token": "tok-5e9f1a"}
    if kind == "nkey":
        key = NKey.new(nkeys.PREFIX_BYTE_USER)
        seed = d / "user.nk"
        seed.write_bytes(key.seed + b"\n")
        seed.chmod(0o600)
        return f'authorization {{ users: [ {{ nkey: "{key.public}" }} ] }}\n', {
            "nkey_seed_file": str(seed)
        }
    if kind == "creds":
        chain = JwtChain.new()
        creds = d / "user.creds"
        creds.write_text(chain.creds())
        creds.chmod(0o600)
        return chain.server_config(), {"creds_file": str(creds)}
    if kind == "tls":
        certs = Certificates.new(d / "certs")
        cert, key = certs.server
        conf = f'tls {{ cert_file: "{cert}", key_file: "{key}", ca_file: "{certs.ca}", verify: true }}\n'
        client_cert, client_key = certs.client
        return conf, {
            "tls_ca_file": certs.ca,
            "tls_cert_file": client_cert,
            "tls_key_file": client_key,
        }
    raise AssertionError(kind)


@pytest.fixture(params=["user_password", "token", "nkey", "creds", "tls"])
async def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[EmbeddedNats, dict[str, str]]]:
    conf_text, fields = secured(request.param, tmp_path)
    conf = tmp_path / "nats.conf"
    conf.write_text("jetstream: enabled\n" + conf_text)
    async with EmbeddedNats(port=0, store_dir=tmp_path / "store", config=conf) as s:
        yield s, fields


async def control_plane_process(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """``jetloom control-plane --port 0`` with ``env``; the process and its API URL once ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "control-plane",
        "--port",
        "0",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen = []
    async with asyncio.timeout(60):
        while line := (await proc.stdout.readline()).decode():
            seen.append(line)
            if line.startswith("jetloom control plane ready api="):
                return proc, line.split("api=", 1)[1].split()[0]
    raise AssertionError("the control plane exited before it was ready:\n" + "".join(seen))


async def test_each_credential_by_flags_env_and_deployment_file(
    server: tuple[EmbeddedNats, dict[str, str]], tmp_path: Path
) -> None:
    nats, fields = server
    with pytest.raises(NatsConnectError):  # the server requires the credential
        await open_connection(NatsSettings(url=nats.url, connect_attempts=1))

    flags = [arg for field, value in fields.items() for arg in (FLAGS[field], value)]
    env = {ENV["url"]: nats.url, **{ENV[field]: value for field, value in fields.items()}}
    toml = tmp_path / "jetloom.toml"
    toml.write_text(
        "[nats]\n"
        + "".join(f'{field} = "{value}"\n' for field, value in {"url": nats.url, **fields}.items())
        + "[control_plane]\nport = 0\n"
    )

    worker, (cp_proc, cp_url) = await asyncio.gather(
        AsyncWorkerProcess.start(CHAIN, nats.url, args=flags, cwd=ROOT),
        control_plane_process(env),
    )
    dep = load_deployment(toml)
    launcher = Launcher(dep.nats.settings(), cwd=ROOT)
    try:
        await worker.wait_ready()
        from_file = await launcher.launch(dep)
        assert from_file is not None
        for url in (cp_url, from_file.url):
            async with Client(url) as client:
                result: Any = await client.run("Chain3", text=f"through {url}")
                assert result == {"n": 2, "source": f"through {url}"}
    finally:
        await launcher.stop()
        cp_proc.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):
                await cp_proc.wait()
        worker.kill()
        await worker.stop()


async def test_missing_creds_file_fails_at_once_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.creds"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "worker", CHAIN,
        "--nats", "nats://127.0.0.1:4222", "--nats-creds", str(missing),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode().strip().splitlines() == [
        f"jetloom worker: the NATS credentials file {str(missing)!r} does not exist"
    ]


async def test_expired_credentials_close_the_connection_and_refuse_the_next(tmp_path: Path) -> None:
    """A user JWT that expires while connected: the server sends -ERR 'User Authentication
    Expired' and closes; ``connection_closed`` says so, and connecting again fails at once."""
    expires_at = int(time.time()) + 3
    chain = JwtChain.new(user_expires_at=expires_at)
    creds = tmp_path / "user.creds"
    creds.write_text(chain.creds())
    conf = tmp_path / "nats.conf"
    conf.write_text("jetstream: enabled\n" + chain.server_config())
    async with EmbeddedNats(port=0, store_dir=tmp_path / "store", config=conf) as nats:
        settings = NatsSettings(url=nats.url, creds_file=str(creds), connect_wait_s=5)
        nc = await open_connection(settings)
        closed = await asyncio.wait_for(connection_closed(nc), 15)
        assert "authentication expired" in closed.cause.lower(), closed
        # the server compares whole seconds: within the second of `exp` a new connection is
        # still let in (and closed at once); wait for the clock to leave it
        await asyncio.sleep(max(0.0, expires_at + 1.05 - time.time()))
        started = time.monotonic()
        with pytest.raises(NatsConnectError) as info:
            await open_connection(settings)
        assert info.value.permanent and time.monotonic() - started < 4


async def test_tls_verifies_the_server_and_the_server_the_client(tmp_path: Path) -> None:
    conf_text, fields = secured("tls", tmp_path)
    conf = tmp_path / "nats.conf"
    conf.write_text("jetstream: enabled\n" + conf_text)
    certs = Certificates(tmp_path / "certs")
    async with EmbeddedNats(port=0, store_dir=tmp_path / "store", config=conf) as nats:
        good = NatsSettings(url=nats.url, **fields)  # type: ignore[arg-type]
        # a server certificate from a CA the client does not trust: refused at once
        with pytest.raises(NatsConnectError) as info:
            await open_connection(good.replace(tls_ca_file=certs.other_ca, connect_wait_s=5))
        assert info.value.permanent and "certificate verify failed" in info.value.cause
        # no client certificate: the server (verify: true) refuses the handshake
        with pytest.raises(NatsConnectError):
            await open_connection(
                good.replace(tls_cert_file=None, tls_key_file=None, connect_attempts=1)
            )
        nc = await open_connection(good)
        try:
            assert nc.is_connected
        finally:
            await nc.close()
