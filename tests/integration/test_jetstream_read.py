"""``JetStreamLog.read`` of long runs: through a consumer made for the read (``engine.log.jsread``)
it returns exactly what batched direct gets return, leaves no consumer behind, and falls back to
direct gets when the server will not make one."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from engine.log.jetstream import JetStreamLog
from engine.log.jsread import FIRST_READ, LONG_READ, ConsumerRead
from engine.records import OutMessage, run_filter, run_subject
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually

WF = "Reader"
LONG = FIRST_READ + LONG_READ + 700  # read through a consumer


def msg(run: str, i: int) -> OutMessage:
    kind, name = ("evt", "Tick") if i % 2 else ("sys", "StepCompleted")
    headers = {"Jl-Run": run, "Jl-Type": name, "Jl-Trigger": str(i)}
    if i % 7 == 0:
        headers["X-Spaced"] = "  kept, stripped  "
    if i % 11 == 0:
        headers = {}
    return OutMessage(run_subject("jetloom", WF, run, kind, name), b'{"i":%d}' % i, headers)


async def fill(log: JetStreamLog, run: str, n: int, *, other: str | None = None) -> None:
    """``n`` records of ``run`` in appends of 8 (some with an idempotency key, so stored with a
    ``Nats-Msg-Id``); with ``other``, a record of that run between every two appends."""
    for start in range(0, n, 8):
        key = f"{run}-{start}" if start % 3 == 0 else None
        await log.append(
            [msg(run, i) for i in range(start, min(n, start + 8))], idempotency_key=key
        )
        if other is not None:
            await log.append([msg(other, start)])


async def by_direct_gets(
    log: JetStreamLog, run: str, after_seq: int = 0, up_to_seq: int | None = None
):
    msgs = await log._scan(log.stream, run_filter(log.prefix, WF, run), after_seq, up_to_seq)
    return [log._raw(m) for m in msgs]


async def consumers(log: JetStreamLog) -> int:
    return (await log.js.stream_info(log.stream)).state.consumer_count


async def test_a_long_read_equals_direct_gets_field_by_field(js_log: JetStreamLog) -> None:
    await fill(js_log, "long", LONG, other="noise")
    expected = await by_direct_gets(js_log, "long")
    assert len(expected) == LONG
    got = await js_log.read(WF, "long")
    assert got == expected
    assert {r.headers.get("X-Spaced") for r in got} == {None, "kept, stripped"}
    assert all(
        "Nats-Sequence" not in r.headers and "Nats-Num-Pending" not in r.headers for r in got
    )
    assert not _consumer_reads_tapped(js_log)  # the read's consumer is untapped with the read
    await eventually(
        lambda: _no_consumers(js_log), timeout=10, what="the read's consumer is deleted"
    )


def _consumer_reads_tapped(log: JetStreamLog) -> bool:
    """Whether a ``ConsumerRead`` still has a tapped subscription (the shared inboxes of direct
    gets and publish acks stay tapped)."""
    tap = log._read_tap()
    assert tap is not None
    return any(
        isinstance(getattr(sink, "__self__", None), ConsumerRead) for sink in tap.sinks.values()
    )


async def _no_consumers(log: JetStreamLog) -> bool:
    return await consumers(log) == 0


@pytest.mark.parametrize("after", [0, 5, FIRST_READ - 1, FIRST_READ + 3, LONG - LONG_READ - 2])
@pytest.mark.parametrize("upto", [None, 1, FIRST_READ + 1, FIRST_READ + LONG_READ + 50, LONG - 1])
async def test_bounds_agree_with_direct_gets(
    js_log: JetStreamLog, after: int, upto: int | None
) -> None:
    await fill(js_log, "r", LONG, other="o")
    seqs = [r.seq for r in await by_direct_gets(js_log, "r")]
    after_seq = seqs[after - 1] if after else 0
    up_to_seq = seqs[upto - 1] if upto is not None else None
    got = await js_log.read(WF, "r", after_seq=after_seq, up_to_seq=up_to_seq)
    assert got == await by_direct_gets(js_log, "r", after_seq, up_to_seq)


async def test_the_consumer_read_alone(js_log: JetStreamLog) -> None:
    await fill(js_log, "c", 600, other="o")
    expected = await by_direct_gets(js_log, "c")
    tap = js_log._read_tap()
    assert tap is not None
    reader = ConsumerRead(
        js_log.nc, tap, js_log.stream, run_filter(js_log.prefix, WF, "c"), 1, None, 5.0
    )
    assert await reader.run() == expected and reader.complete
    beyond = ConsumerRead(
        js_log.nc,
        tap,
        js_log.stream,
        run_filter(js_log.prefix, WF, "c"),
        expected[-1].seq + 1,
        None,
        5.0,
    )
    assert await beyond.run() == [] and beyond.complete
    bounded = ConsumerRead(
        js_log.nc, tap, js_log.stream, run_filter(js_log.prefix, WF, "c"), 1, expected[99].seq, 5.0
    )
    assert await bounded.run() == expected[:100] and bounded.complete


async def test_concurrent_long_reads_share_the_connection(js_log: JetStreamLog) -> None:
    import asyncio

    await fill(js_log, "a", LONG, other="b")
    await fill(js_log, "b", LONG)
    a, b = await asyncio.gather(js_log.read(WF, "a"), js_log.read(WF, "b"))
    assert a == await by_direct_gets(js_log, "a") and b == await by_direct_gets(js_log, "b")
    assert not _consumer_reads_tapped(js_log)


async def test_direct_gets_read_on_when_no_consumer_can_be_made(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        config = dict(
            subjects=["jetloom.run.>"], storage=StorageType.FILE, allow_direct=True, max_consumers=1
        )
        await js.add_stream(StreamConfig(name="JETLOOM", **config))  # type: ignore[arg-type]
        await js.add_stream(
            StreamConfig(name="JETLOOM_DLQ", subjects=["jetloom.dlq.>"], allow_direct=True)
        )
        await js.add_consumer("JETLOOM", durable_name="taken")
        log = JetStreamLog(nc)
        await fill(log, "full", LONG)
        assert await log.read(WF, "full") == await by_direct_gets(log, "full")
        assert await consumers(log) == 1
    finally:
        await nc.close()


async def test_a_publish_without_ack_fails_after_the_timeout_and_no_responders_at_once(
    nats_server: EmbeddedNats,
) -> None:
    """Appends on subjects no stream takes: with a silent subscriber there is no ack (LogError
    after the request timeout, from the ack inbox's deadline sweep); with nobody there, the
    server's 503 comes back at once (LogUnavailableError: with ``retry_for=0`` not retried, as
    it is through a leader election otherwise, ``engine.log.retry``)."""
    import asyncio
    import time

    from engine.errors import LogError
    from engine.log.retry import LogUnavailableError

    nc = await nats.connect(nats_server.url)
    log = JetStreamLog(nc, prefix="nostream", request_timeout=0.5, retry_for=0)
    try:
        message = OutMessage(run_subject("nostream", WF, "r", "evt", "E"), b"{}", {})
        with pytest.raises(LogUnavailableError, match="no responders"):
            await asyncio.wait_for(log.append([message]), 5)

        async def silent(msg: object) -> None:  # takes the message, never answers
            return None

        await nc.subscribe("nostream.run.>", cb=silent)
        t0 = time.monotonic()
        with pytest.raises(LogError, match="no publish ack within 0.5s"):
            await asyncio.wait_for(log.append([message]), 5)
        assert time.monotonic() - t0 >= 0.5
    finally:
        await log.close()
        await nc.close()


@pytest.mark.parametrize("far", [True, False])
@pytest.mark.parametrize("expect", [1, 3, 8, 100])
@pytest.mark.parametrize("after", [0, 5, 40])
async def test_a_bounded_read_walked_record_by_record_agrees_with_direct_gets(
    js_log: JetStreamLog, expect: int, after: int, far: bool
) -> None:
    """``expect`` is a hint: a short read far behind the stream's newest sequence is walked
    record by record, read in batches past ``WALK_MAX`` records or near the newest sequence; the
    same records every way (the hint is often wrong here on purpose)."""
    await fill(js_log, "w", 60, other="o")
    if far:
        js_log.head_seq = 10**9  # as if the stream had grown far past the run
    seqs = [r.seq for r in await by_direct_gets(js_log, "w")]
    after_seq = seqs[after - 1] if after else 0
    for upto in (after + 1, after + 3, after + 12, 60):
        up_to_seq = seqs[upto - 1]
        sent = js_log.nc.stats["out_msgs"]
        got = await js_log.read(WF, "w", after_seq=after_seq, up_to_seq=up_to_seq, expect=expect)
        requests = js_log.nc.stats["out_msgs"] - sent
        assert got == await by_direct_gets(js_log, "w", after_seq, up_to_seq), upto
        if upto - after <= 3:  # one request per record when walked, else one batch
            assert requests == (upto - after if far and expect <= 8 else 1), (upto, requests)
