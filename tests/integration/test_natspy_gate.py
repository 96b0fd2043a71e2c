"""The gate of ``_natspy`` on a real nats-server: the installed nats-py gets the fast path; a
version outside the tested range, a client class lacking an attribute and one with a changed
signature each give one WARNING and a log on nats-py's public API that appends, reads, consumes,
follows, scans and keeps dead letters as the fast log does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from nats.aio.client import Client

from engine.jetstream import _natspy
from engine.jetstream.log import JetStreamLog
from engine.jetstream.read import FIRST_READ, LONG_READ
from engine.model.records import OutMessage, RawRecord
from engine.wire.subjects import run_filter, run_subject
from services.natsserver import EmbeddedNats
from tests.unit.test_natspy_gate import ChangedFlush, warnings, without

WF = "Gated"
LONG = FIRST_READ + LONG_READ + 300  # long enough for the fast path's read consumer


def msg(run: str, i: int, kind: str = "evt", name: str = "Tick") -> OutMessage:
    return OutMessage(run_subject("jetloom", WF, run, kind, name), b'{"i":%d}' % i, {"Jl-Run": run, "Jl-Trigger": str(i)})


async def connected(cls: type, url: str) -> Any:
    nc = cls()
    await nc.connect(servers=[url], connect_timeout=5, max_reconnect_attempts=0)
    return nc


@pytest.fixture
async def fast_log(nats_server: EmbeddedNats) -> AsyncIterator[JetStreamLog]:
    log = await JetStreamLog.connect(nats_server.url, fast_path=True)
    try:
        assert log.fast_path
        yield log
    finally:
        await log.close()


def _version(monkeypatch: pytest.MonkeyPatch) -> type:
    monkeypatch.setattr(_natspy, "installed_version", lambda: "2.17.0")
    return Client


REFUSALS: dict[str, tuple[Callable[[pytest.MonkeyPatch], type], str]] = {
    "newer-version": (_version, "nats-py 2.17.0 (tested: 2.16.x)"),
    "lacking-attribute": (lambda _: without("_process_err"), "Client._process_err is missing"),
    "changed-signature": (lambda _: ChangedFlush, "ChangedFlush._flush_pending has parameters"),
}


def fields(records: list[RawRecord]) -> list[tuple[int, str, dict[str, str], bytes, int]]:
    return [(r.seq, r.subject, r.headers, r.data, r.time_ns) for r in records]


async def test_the_installed_nats_py_gets_the_fast_path(
    nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(_natspy.FAST_PATH_ENV, raising=False)
    log = await JetStreamLog.connect(nats_server.url)
    try:
        assert log.fast_path and log.outbox.usable and log.tap is not None
        assert warnings(caplog) == []
    finally:
        await log.close()


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_refused_client_runs_the_log_on_the_public_api(
    nats_server: EmbeddedNats,
    fast_log: JetStreamLog,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    make, named = REFUSALS[case]
    nc = await connected(make(monkeypatch), nats_server.url)
    log = JetStreamLog(nc, owns_connection=True, fast_path=True)
    try:
        await log.setup()
        assert not log.fast_path and log.tap is None and not log.outbox.usable
        assert JetStreamLog(nc).fast_path is False  # a second log on the connection: no new line
        [line] = warnings(caplog)
        assert named in line and "public API (slower, same behaviour)" in line
        await _works_as_the_fast_log_does(log, fast_log)
    finally:
        await log.close()


async def _works_as_the_fast_log_does(log: JetStreamLog, fast: JetStreamLog) -> None:
    # append: pipelined with a key, a duplicate, and a long run
    first = await log.append([msg("a", 0, "sys", "RunStarted"), msg("a", 1)], idempotency_key="a-start")
    assert first.count == 2 and not first.duplicate
    again = await log.append([msg("a", 0, "sys", "RunStarted"), msg("a", 1)], idempotency_key="a-start")
    assert again.duplicate
    for start in range(0, LONG, 16):
        await log.append([msg("long", i) for i in range(start, min(LONG, start + 16))])
    # read: the same records as the fast log reads (which uses a read consumer for this one)
    got = await log.read(WF, "long")
    assert len(got) == LONG
    assert fields(got) == fields(await fast.read(WF, "long"))
    assert fields(await log.read(WF, "long", after_seq=got[9].seq, up_to_seq=got[200].seq)) == fields(got[10:201])
    assert fields(await log.read(WF, "a")) == fields(await fast.read(WF, "a"))
    # scans and the last record per subject
    assert fields(await log.scan(run_filter("jetloom", WF, "long"), limit=50)) == fields(got[:50])
    assert fields(await log.last_per_subject([run_filter("jetloom", WF, "a")])) == fields(
        await fast.last_per_subject([run_filter("jetloom", WF, "a")])
    )
    # consume: a delivery of a step consumer, acknowledged
    await log.ensure_consumer(WF, "s", ["Tick"])
    deliveries = log.consume(WF, "s", max_in_flight=4)
    try:
        async with asyncio.timeout(10):
            d = await anext(deliveries)
        assert d.record.subject == msg("a", 1).subject and d.attempt == 1
        await d.ack()
    finally:
        await deliveries.aclose()
    # follow: the stored records, then one appended while following
    follower = log.follow(WF, "a")
    try:
        async with asyncio.timeout(10):
            stored = [r.seq for r in await fast.read(WF, "a")]
            assert [(await anext(follower)).seq for _ in stored] == stored
            later = await log.append([msg("a", 2)])
            assert (await anext(follower)).seq == later.last_seq
    finally:
        await follower.aclose()
    # dead letters
    await log.dead_letter(got[0], reason="test", consumer="s")
    [dead] = await log.dead_letters()
    assert (dead.original_seq, dead.reason, dead.data) == (got[0].seq, "test", got[0].data)
    assert [(x.seq, x.subject) for x in await fast.dead_letters()] == [(dead.seq, dead.subject)]


async def test_the_environment_turns_it_off_with_an_info_line_only(
    nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="jetloom.log")
    monkeypatch.setenv(_natspy.FAST_PATH_ENV, "0")
    log = await JetStreamLog.connect(nats_server.url)
    try:
        assert not log.fast_path
        assert warnings(caplog) == []
        assert any("fast path off" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    finally:
        await log.close()
