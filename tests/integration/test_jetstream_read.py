"""``JetStreamLog.read`` of long runs: through a consumer made for the read (``engine.jetstream.read``)
it returns exactly what batched direct gets return, leaves no consumer behind, and falls back to
direct gets when the server will not make one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from engine.jetstream.log import JetStreamLog
from engine.jetstream.read import FIRST_READ, LONG_READ, WALK_MAX, ConsumerRead
from engine.model.records import OutMessage, RawRecord
from engine.wire.subjects import run_filter, run_subject
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


Stored = tuple[int, str, dict[str, str], bytes, int]  # seq, subject, headers, data, time (µs)


def fields(records: list[RawRecord]) -> list[Stored]:
    """What a read returned, in the oracle's terms (the time to the microsecond, as nats-py's
    ``datetime`` holds it)."""
    return [(r.seq, r.subject, r.headers, r.data, r.time_ns // 1000) for r in records]


async def by_nats_py(
    log: JetStreamLog, run: str, after_seq: int = 0, up_to_seq: int | None = None
) -> list[Stored]:
    """The oracle: the run's records one by one through nats-py's public ``get_msg`` (the
    stream's ``MSG.GET`` API with ``next_by_subj``; JSON replies, none of the log's reading code),
    on a connection of its own (the log's has its header and protocol parsers installed)."""
    assert log.nc.connected_url is not None
    nc = await nats.connect(f"nats://{log.nc.connected_url.netloc}")
    js = nc.jetstream()
    out: list[Stored] = []
    seq = after_seq + 1
    try:
        while True:
            try:
                m = await js.get_msg(log.stream, seq=seq, subject=run_filter(log.prefix, WF, run), next=True)
            except NotFoundError:
                return out
            assert m.seq is not None and m.subject is not None and m.time is not None
            if up_to_seq is not None and m.seq > up_to_seq:
                return out
            stamp = m.time.replace(tzinfo=UTC) if m.time.tzinfo is None else m.time
            micros = (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            out.append((m.seq, m.subject, dict(m.headers or {}), m.data or b"", micros))
            seq = m.seq + 1
    finally:
        await nc.close()


async def consumers(log: JetStreamLog) -> int:
    return (await log.js.stream_info(log.stream)).state.consumer_count


async def test_a_long_read_equals_direct_gets_field_by_field(fast_js_log: JetStreamLog) -> None:
    await fill(fast_js_log, "long", LONG, other="noise")
    expected = await by_nats_py(fast_js_log, "long")
    assert len(expected) == LONG
    got = await fast_js_log.read(WF, "long")
    assert fields(got) == expected
    assert {r.headers.get("X-Spaced") for r in got} == {None, "kept, stripped"}
    assert all(
        "Nats-Sequence" not in r.headers and "Nats-Num-Pending" not in r.headers for r in got
    )
    assert not _consumer_reads_tapped(fast_js_log)  # the read's consumer is untapped with the read
    await eventually(
        lambda: _no_consumers(fast_js_log), timeout=10, what="the read's consumer is deleted"
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


@pytest.mark.parametrize("after", [0, FIRST_READ - 1, LONG - LONG_READ - 2])
@pytest.mark.parametrize("upto", [None, 1, FIRST_READ + 1, FIRST_READ + LONG_READ + 50])
async def test_bounds_agree_with_the_oracle(
    fast_js_log: JetStreamLog, after: int, upto: int | None
) -> None:
    """Bounds on each side of the first direct get's batch and of the hand-over to a consumer."""
    await fill(fast_js_log, "r", LONG, other="o")
    seqs = [r[0] for r in await by_nats_py(fast_js_log, "r")]
    after_seq = seqs[after - 1] if after else 0
    up_to_seq = seqs[upto - 1] if upto is not None else None
    got = await fast_js_log.read(WF, "r", after_seq=after_seq, up_to_seq=up_to_seq)
    assert fields(got) == await by_nats_py(fast_js_log, "r", after_seq, up_to_seq)


async def test_the_consumer_read_alone(fast_js_log: JetStreamLog) -> None:
    await fill(fast_js_log, "c", 600, other="o")
    expected = await fast_js_log.read(WF, "c")
    assert fields(expected) == await by_nats_py(fast_js_log, "c")
    tap = fast_js_log._read_tap()
    assert tap is not None
    reader = ConsumerRead(
        fast_js_log.nc, tap, fast_js_log.stream, run_filter(fast_js_log.prefix, WF, "c"), 1, None, 5.0
    )
    assert await reader.run() == expected and reader.complete
    beyond = ConsumerRead(
        fast_js_log.nc,
        tap,
        fast_js_log.stream,
        run_filter(fast_js_log.prefix, WF, "c"),
        expected[-1].seq + 1,
        None,
        5.0,
    )
    assert await beyond.run() == [] and beyond.complete
    bounded = ConsumerRead(
        fast_js_log.nc, tap, fast_js_log.stream, run_filter(fast_js_log.prefix, WF, "c"), 1, expected[99].seq, 5.0
    )
    assert await bounded.run() == expected[:100] and bounded.complete


async def test_concurrent_long_reads_share_the_connection(fast_js_log: JetStreamLog) -> None:
    import asyncio

    await fill(fast_js_log, "a", LONG, other="b")
    await fill(fast_js_log, "b", LONG)
    a, b = await asyncio.gather(fast_js_log.read(WF, "a"), fast_js_log.read(WF, "b"))
    assert fields(a) == await by_nats_py(fast_js_log, "a") and fields(b) == await by_nats_py(fast_js_log, "b")
    assert not _consumer_reads_tapped(fast_js_log)


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
        assert fields(await log.read(WF, "full")) == await by_nats_py(log, "full")
        assert await consumers(log) == 1
    finally:
        await nc.close()


async def test_a_publish_without_ack_fails_after_the_timeout_and_no_responders_at_once(
    nats_server: EmbeddedNats,
) -> None:
    """Appends on subjects no stream takes: with a silent subscriber there is no ack (LogError
    after the request timeout, from the ack inbox's deadline sweep); with nobody there, the
    server's 503 comes back at once (LogUnavailableError: with ``retry_for=0`` not retried, as
    it is through a leader election otherwise, ``engine.jetstream.retry``)."""
    import asyncio
    import time

    from engine.jetstream.retry import LogUnavailableError
    from engine.model.errors import LogError

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
@pytest.mark.parametrize("expect", [1, WALK_MAX, 100])
@pytest.mark.parametrize("after", [0, 40])
async def test_a_bounded_read_with_a_hint_agrees_with_the_oracle(
    fast_js_log: JetStreamLog, expect: int, after: int, far: bool
) -> None:
    """``expect`` is a hint: a short read far behind the stream's newest sequence is walked
    record by record, read in batches past ``WALK_MAX`` records or near the newest sequence; the
    same records every way (the hint is often wrong here on purpose)."""
    await fill(fast_js_log, "w", 60, other="o")
    if far:
        fast_js_log.head_seq = 10**9  # as if the stream had grown far past the run
    seqs = [r[0] for r in await by_nats_py(fast_js_log, "w")]
    after_seq = seqs[after - 1] if after else 0
    for upto in (after + 1, after + 3, after + 12, 60):
        up_to_seq = seqs[upto - 1]
        got = await fast_js_log.read(WF, "w", after_seq=after_seq, up_to_seq=up_to_seq, expect=expect)
        assert fields(got) == await by_nats_py(fast_js_log, "w", after_seq, up_to_seq), upto


async def test_a_short_read_far_behind_the_newest_is_walked_record_by_record(fast_js_log: JetStreamLog) -> None:
    """What the walk is for (``JetStreamLog.read``): a short bounded read of an old run costs
    one direct get per record, never a batched get over the run's filter."""
    await fill(fast_js_log, "w", 20, other="o")
    fast_js_log.head_seq = 10**9  # as if the stream had grown far past the run
    seqs = [r[0] for r in await by_nats_py(fast_js_log, "w")]
    for n in (1, WALK_MAX):
        sent = fast_js_log.nc.stats["out_msgs"]
        got = await fast_js_log.read(WF, "w", after_seq=seqs[4], up_to_seq=seqs[4 + n], expect=n)
        assert fast_js_log.nc.stats["out_msgs"] - sent == n and [r.seq for r in got] == seqs[5 : 5 + n]
