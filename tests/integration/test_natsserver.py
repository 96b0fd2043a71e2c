"""EmbeddedNats against the real nats-server binary."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import nats
import pytest
from nats.errors import NoServersError
from nats.js.api import StorageType

from services.natsserver import (
    DEFAULT_CONFIG,
    EmbeddedNats,
    NatsServerError,
    find_nats_server_binary,
)

pytestmark = pytest.mark.timeout(60)


async def _connect(url: str) -> nats.NATS:
    # nats-py treats max_reconnect_attempts=0 as "retry forever", also for the first connect.
    return await nats.connect(
        url,
        connect_timeout=2,
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.05,
    )


def _connection_refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_binary_is_found() -> None:
    assert Path(find_nats_server_binary()).is_file()


async def test_starts_on_free_port_with_jetstream(nats_server: EmbeddedNats, nats_url: str):
    assert nats_server.running
    assert nats_server.port > 0
    assert nats_url == f"nats://127.0.0.1:{nats_server.port}"
    assert isinstance(nats_server.pid, int)

    nc = await _connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="SMOKE", subjects=["smoke.>"], storage=StorageType.FILE)
        ack = await js.publish("smoke.one", b"hello")
        assert (ack.stream, ack.seq) == ("SMOKE", 1)
        msg = await js.get_msg("SMOKE", 1)
        assert msg.subject == "smoke.one"
        assert msg.data == b"hello"
    finally:
        await nc.close()

    # The repo config is in effect and the store dir is the one we asked for.
    log = nats_server.log_path.read_text()
    if DEFAULT_CONFIG is not None:
        assert "Using configuration file" in log
    assert f'Store Directory: "{nats_server.store_dir / "jetstream"}"' in log
    assert (nats_server.store_dir / "jetstream").is_dir()
    assert "Server is ready" in log


async def test_two_servers_get_different_ports():
    async with EmbeddedNats() as a, EmbeddedNats() as b:
        assert a.port != b.port
        assert a.store_dir != b.store_dir
        for server in (a, b):
            nc = await _connect(server.url)
            assert nc.is_connected
            await nc.close()


async def test_temporary_store_is_removed_on_stop():
    server = EmbeddedNats()
    await server.astart()
    store, log = server.store_dir, server.log_path
    assert store.is_dir() and log.is_file()
    await server.astop()
    assert not server.running and server.pid is None
    assert not store.exists() and not log.exists()
    await server.astop()  # idempotent


async def test_given_store_dir_is_kept_on_stop(tmp_path: Path):
    with EmbeddedNats(store_dir=tmp_path / "store") as server:
        assert server.store_dir == tmp_path / "store"
    assert (tmp_path / "store" / "jetstream").is_dir()


async def test_restart_keeps_port_and_file_storage(nats_server: EmbeddedNats):
    port = nats_server.port
    nc = await _connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="DURABLE", subjects=["durable.>"], storage=StorageType.FILE)
    await js.publish("durable.a", b"before restart")
    await nc.close()

    old_pid = nats_server.pid
    await nats_server.arestart()
    assert nats_server.port == port
    assert nats_server.pid != old_pid

    nc = await _connect(nats_server.url)
    try:
        js = nc.jetstream()
        msg = await js.get_msg("DURABLE", 1)
        assert msg.data == b"before restart"
        ack = await js.publish("durable.b", b"after restart")
        assert ack.seq == 2
    finally:
        await nc.close()


async def test_client_reconnects_across_restart(nats_server: EmbeddedNats):
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await nats.connect(
        nats_server.url,
        reconnect_time_wait=0.05,
        max_reconnect_attempts=-1,
        reconnected_cb=on_reconnect,
    )
    try:
        await nats_server.arestart()
        async with asyncio.timeout(10):
            await reconnected.wait()
        js = nc.jetstream()
        await js.add_stream(name="AFTER", subjects=["after.>"])
        assert (await js.publish("after.x", b"x")).seq == 1
    finally:
        await nc.close()


async def test_kill_refuses_connections_and_restart_recovers(nats_server: EmbeddedNats):
    nc = await _connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="CHAOS", subjects=["chaos.>"], storage=StorageType.FILE)
    await js.publish("chaos.a", b"acked before kill")
    await nc.close()

    host, port = "127.0.0.1", nats_server.port
    nats_server.kill()
    assert not nats_server.running
    assert nats_server.pid is None
    # kill() reaps the process, so the kernel has already closed its listening socket.
    assert _connection_refused(host, port)
    with pytest.raises(NoServersError):
        await _connect(nats_server.url)

    await nats_server.arestart()
    assert nats_server.port == port
    nc = await _connect(nats_server.url)
    try:
        msg = await nc.jetstream().get_msg("CHAOS", 1)
        assert msg.data == b"acked before kill"
    finally:
        await nc.close()


def test_missing_config_raises_helpful_error(tmp_path: Path):
    missing = tmp_path / "nope.conf"
    server = EmbeddedNats(config=missing)
    with pytest.raises(FileNotFoundError, match="config file not found") as excinfo:
        server.start()
    assert str(missing) in str(excinfo.value)
    assert not server.running


def test_invalid_config_raises_with_log_tail(tmp_path: Path):
    bad = tmp_path / "bad.conf"
    bad.write_text("jetstream { no_such_setting: 1 }\n")
    server = EmbeddedNats(config=bad)
    with pytest.raises(NatsServerError, match="exited with code") as excinfo:
        server.start()
    message = str(excinfo.value)
    assert str(bad) in message
    assert 'unknown field "no_such_setting"' in message  # the server's own diagnosis
    assert not server.running


def test_config_store_dir_is_overridden(tmp_path: Path):
    """A store_dir in the config would clash with -sd; the launcher's store dir wins."""
    conf = tmp_path / "with-store.conf"
    conf.write_text(f'jetstream {{\n  store_dir: "{tmp_path / "from-config"}"\n}}\n')
    with EmbeddedNats(config=conf, store_dir=tmp_path / "ours") as server:
        assert f'Store Directory: "{tmp_path / "ours" / "jetstream"}"' in server.log_tail()
    assert not (tmp_path / "from-config").exists()


def test_without_config(tmp_path: Path):
    with EmbeddedNats(config=None, store_dir=tmp_path / "s") as server:
        log = server.log_tail()
        assert "Using configuration file" not in log
        assert f'Store Directory: "{tmp_path / "s" / "jetstream"}"' in log


def test_fixed_port_in_use_raises(nats_server: EmbeddedNats):
    clash = EmbeddedNats(port=nats_server.port)
    with pytest.raises(NatsServerError, match="exited with code"):
        clash.start()
    assert not clash.running


async def test_config_includes_still_resolve(tmp_path: Path):
    """The server reads a copy of the config elsewhere; relative includes must still work."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "payload.conf").write_text("max_payload: 2MB\n")
    conf = tmp_path / "main.conf"
    conf.write_text('include "sub/payload.conf"\njetstream {}\n')
    async with EmbeddedNats(config=conf) as server:
        nc = await _connect(server.url)
        try:
            assert nc.max_payload == 2 * 1024 * 1024
        finally:
            await nc.close()
