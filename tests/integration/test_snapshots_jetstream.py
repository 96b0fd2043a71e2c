"""Snapshots in the JetStream KV bucket: a 100,000-record run rebuilt from its snapshot and the
tail, without reading the whole log."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable

import pytest

from engine.jetstream.log import JetStreamLog
from engine.jetstream.snapshots import KvSnapshots
from engine.model.records import OutMessage, StepCompleted
from engine.runtime.commands import event_payload, start_messages
from engine.runtime.runs import RunCache
from engine.state.fold import KEEP_EVENTS, HistoryNeeded
from engine.state.snapshots import encode_snapshot, snapshot_seq
from engine.wire.codec import encode
from engine.wire.headers import H_RUN, H_STEP, H_TRIGGER, H_TYPE
from engine.wire.subjects import run_subject
from services.nats_client import NatsClient
from tests.integration.procs import WorkerProcess, eventually
from tests.workflows import FanInOut, Tick, Ticker

RUN = "big"


@pytest.fixture
async def log(nats_url: str) -> AsyncIterator[JetStreamLog]:
    log = await JetStreamLog.connect(nats_url)
    try:
        yield log
    finally:
        await log.close()


def _pair(log: JetStreamLog, i: int, trigger: int) -> list[OutMessage]:
    """``tick`` handled the Tick at ``trigger`` (setting ``i``) and emitted the next Tick."""
    base = {H_RUN: RUN, H_STEP: "tick", H_TRIGGER: str(trigger)}
    done = StepCompleted(step="tick", trigger=trigger, emitted=["Tick"], state={"i": i})
    return [
        OutMessage(run_subject(log.prefix, "Ticker", RUN, "sys", "StepCompleted"), encode(done), {**base, H_TYPE: "StepCompleted"}),
        OutMessage(
            run_subject(log.prefix, "Ticker", RUN, "evt", "Tick"),
            event_payload("Tick", {"i": i + 1, "n": 10**9, "interval": 0.0}),
            {**base, H_TYPE: "Tick"},
        ),
    ]


async def _append_ticks(log: JetStreamLog, first: int, count: int, last_tick_seq: int) -> int:
    """Append ``count`` (StepCompleted, Tick) pairs after the Tick at ``last_tick_seq``, in
    pipelined chunks; returns the sequence of the last Tick."""
    i, seq = first, last_tick_seq
    while i < first + count:
        chunk: list[OutMessage] = []
        for j in range(i, min(i + 2000, first + count)):
            # the stream holds only this run, so the next sequences are known in advance
            chunk += _pair(log, j, seq + 2 * (j - i))
        res = await log.append(chunk)
        assert res.count == len(chunk) and res.seqs[0] == seq + 1, "nothing else writes here"
        seq = res.seqs[-1]
        i += len(chunk) // 2
    return seq


@pytest.mark.parametrize(
    "records", [100_000], ids=["100k"]
)
async def test_a_long_run_is_rebuilt_from_its_snapshot_and_the_tail(log: JetStreamLog, records: int) -> None:
    """100,000 records: the first cache folds them all and
    writes a snapshot, the run goes on, and a second cache reads the snapshot and 20 records."""
    pairs = (records - 2) // 2
    start = start_messages(log.prefix, "Ticker", RUN, "TickStart", event_payload("TickStart", {"n": 10**9}))
    res = await log.append(start, idempotency_key=f"{RUN}:start")
    seq = await _append_ticks(log, 0, pairs, res.seqs[-1])
    assert seq == records
    store = await KvSnapshots.open(log.nc)

    t0 = time.perf_counter()
    first = RunCache(log, "Ticker", Ticker.events, snapshots=store)
    whole = await first.get(RUN, min_seq=0, refresh=True)
    await first.flush()
    full_s = time.perf_counter() - t0
    assert first.records_read == records and first.snapshots_written == 1
    assert snapshot_seq(await store.get("Ticker", RUN) or b"") == records

    seq = await _append_ticks(log, pairs, 10, seq)  # the run goes on: a tail of 20 records

    t0 = time.perf_counter()
    second = RunCache(log, "Ticker", Ticker.events, snapshots=store)
    run = await second.get(RUN, min_seq=0, refresh=True)
    snap_s = time.perf_counter() - t0
    assert second.snapshots_loaded == 1
    assert second.records_read == 20, "only the tail after the snapshot was read"
    st = run.state
    assert (st.seq, st.records, st.status) == (records + 20, records + 20, "running")
    assert st.state == {"i": pairs + 9}
    # compacted: the newest triggers and events in full, the older ones counted
    assert st.horizon > 0 and len(st.events["Tick"]) == KEEP_EVENTS + 10
    assert len(st.events["Tick"]) + st.dropped["Tick"].untargeted == pairs + 10
    assert all((t, "tick") in st.done for t, _ in st.events["Tick"][:-1])
    with pytest.raises(HistoryNeeded):
        _ = (4, "tick") in st.done  # only the whole log still knows
    assert st.steps_completed == pairs + 10
    assert run.event(seq) == Tick(i=pairs + 10, n=10**9, interval=0.0)  # the newest, for its step
    await first.get(RUN, min_seq=seq)
    assert encode_snapshot(whole.state) == encode_snapshot(st)
    size = len(await store.get("Ticker", RUN) or b"")
    # (records_read above is what shows the snapshot saved the read; the times are for the eye)
    print(f"\n{records:,} records: full fold {full_s:.2f} s, snapshot ({size:,} B) + 20-record tail {snap_s:.3f} s")


async def test_kv_store_never_moves_a_snapshot_backwards(log: JetStreamLog) -> None:
    from engine.state.fold import RunState

    store = await KvSnapshots.open(log.nc)
    old, new = RunState("W", "r"), RunState("W", "r")
    old.seq, new.seq = 5, 9
    assert await store.put("W", "r", encode_snapshot(old))
    assert await store.put("W", "r", encode_snapshot(new))
    assert not await store.put("W", "r", encode_snapshot(old))
    assert snapshot_seq(await store.get("W", "r") or b"") == 9
    await store.delete("W", "r")
    assert await store.get("W", "r") is None
    assert await store.put("W", "r", encode_snapshot(old))


async def test_a_second_worker_process_takes_the_run_from_its_snapshot(
    nats_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    """The run moves between processes: one serves ``split`` and ``square``, the other only
    ``join``, both writing a snapshot every 10 records. The joining process starts once the first
    has written a snapshot of every run, so it never committed the runs' earlier records: it loads
    each run's snapshot and reads only the tail after it."""
    fan = "tests.workflows:FanInOut"
    squares = workers(fan, nats_url, "--step", "split", "--step", "square", "--snapshot-every", "10")
    async with await NatsClient.connect(nats_url) as client:
        handlers = [await client.start(FanInOut, n=30, delay=0.0, timeout=60) for _ in range(3)]
        snapshots = await KvSnapshots.open(client.log.nc)

        async def every_run_has_a_snapshot() -> bool:
            for h in handlers:
                seq = snapshot_seq(await snapshots.get("FanInOut", h.run_id) or b"")
                if seq is None or seq <= 10:
                    return False
            return True

        # (the joins wait in JetStream meanwhile: no process serves ``join`` yet)
        await eventually(every_run_has_a_snapshot, what="the first process wrote a snapshot of each run")
        joins = workers(fan, nats_url, "--step", "join", "--snapshot-every", "10")
        for h in handlers:
            assert await h == [i * i for i in range(30)]

    def counters(w: WorkerProcess) -> dict[str, int]:
        assert w.stop() == 0
        line = w.wait_for("jetloom worker stopped")
        return {k: int(v) for k, v in re.findall(r"\b(snapshots_loaded|snapshots_written|records_read)=(\d+)", line)}

    wrote, took = counters(squares), counters(joins)
    assert wrote["snapshots_written"] >= 3, wrote  # (at least one a run before the joiner started)
    # the joiner's first look at each run starts from the other's snapshot, not from the start
    # (concurrent joins of one run that miss the cache together may each load it)
    assert took["snapshots_loaded"] >= 3, took
