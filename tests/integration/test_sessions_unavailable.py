"""The sessions bucket rides through a server that does not answer (as during a leader election
of the bucket) within a bound, then fails with ``LogUnavailableError`` (503 over HTTP), never
with a raw nats-py error; and serves again once the server answers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import nats
import pytest

from engine.jetstream.retry import LogUnavailableError
from engine.jetstream.sessions import KvSessionStore as SessionStore
from services.natsserver import EmbeddedNats


async def test_a_server_that_does_not_answer_is_log_unavailable_after_the_bound(
    nats_server: EmbeddedNats,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        opened = await SessionStore.open(nc)
        session = await opened.create("Chain3")
        # (requests time out after 1 s here, not nats-py's 5 s, to keep the test short)
        kv = await nc.jetstream(timeout=1.0).key_value("jetloom_sessions")
        store = SessionStore(kv, retry_for=1.0)
        assert nats_server.pid is not None
        os.kill(nats_server.pid, signal.SIGSTOP)  # requests time out, the client stays connected
        try:
            await _until_stopped(nats_server.pid)
            started = time.monotonic()
            with pytest.raises(LogUnavailableError, match="session get of"):
                await store.get(session.id)
            with pytest.raises(LogUnavailableError, match="session create of"):
                await store.create("Chain3")
            took = time.monotonic() - started
        finally:
            os.kill(nats_server.pid, signal.SIGCONT)
        assert took < 10, took  # two requests, each: a 1 s timeout, then retried for 1 s
        got, revision = await store.get(session.id)
        assert got == session and revision > 0
    finally:
        await nc.close()


async def _until_stopped(pid: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait until every thread of ``pid`` is stopped: ``kill`` returns before a busy thread on the
    other core has taken the SIGSTOP, and one request answered in that window passed a test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = _thread_states(pid)
        if states and all(st == "T" for st in states):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"nats-server {pid} did not stop within {timeout}s")


def _thread_states(pid: int) -> list[str]:
    """The scheduler state letter of each thread of ``pid`` (``T``: stopped), from /proc."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
    return states
