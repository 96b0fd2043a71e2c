"""(d) Rebuilding a run's context from its log at 100 / 1,000 / 10,000 / 100,000 records, beside a
raw ordered-consumer replay of the same subjects.

A synthetic run is appended through ``JetStreamLog.append`` (atomic batches of up to
``APPEND_BATCH`` messages): its start commit (``RunStarted`` + ``StartEvent``), then step commits of
a ``StepCompleted`` (one state change) and the ``BenchTick`` event it emitted, up to N records.

- **rebuild** = what a worker or a reader does for a run it has not cached:
  ``JetStreamLog.read`` (batched direct gets) → ``decode_record`` each → ``fold``; the three parts
  are timed separately.
- **raw replay** = a nats-py ordered push consumer on the run's subject filter, counting messages
  until the N-th (no decoding): the floor for reading a run on this stack.

- **rebuild from a snapshot** = what a worker does for a run it has not cached once a snapshot
  exists (``engine.runtime.runs.RunCache``): get the snapshot from the KV bucket ``<prefix>_snapshots``,
  ``decode_snapshot``, read the records after it (a tail of ``SNAPSHOT_TAIL``) and fold them in. The
  snapshot is written once, of the fold up to the tail, with ``encode_snapshot`` + ``KvSnapshots``.
  Once every size is in the stream, the sizes are rebuilt from their snapshots in turns,
  ``SNAPSHOT_REPS`` rounds (the median per size is reported).

Every measured run is followed in the stream by a short neighbour run (``NEIGHBOUR`` records), as
in a stream other runs keep appending to, and the rounds from snapshots start once the stream has
been idle ``IDLE_S``, so that every size is read in the same conditions. Before (2026-12-01), the
100,000-record run was the last thing in the stream and the only one read less than 10 s after
its append; its 20-record tail read cost nats-server 5–8 ms of CPU, the same read with a 2-record
run after it ≈ 1 ms. The server's cost of a tail read depends on where the tail lies in its
message block, not on the run's size: a batched direct get counts the filter's matches after its
start (``NumPending``), and when the tail lies in the first half of the stream's blocks the server
walks the block's messages from its first to the read's start to count them (nats-server 2.15
``filestore.go``), ≈ 0.25 µs per message. With this layout that falls on the 10,000-record run,
whose tail lies ≈ 11,000 messages into the first block (3 ms against 0.7 ms of server CPU per
read).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

from engine import StartEvent, fold
from engine.jetstream.log import JetStreamLog
from engine.jetstream.snapshots import KvSnapshots
from engine.model.events import encode_event
from engine.model.records import OutMessage, StepCompleted
from engine.runtime.inprocess import start_commit
from engine.state.snapshots import decode_snapshot, encode_snapshot
from engine.wire.codec import decode_record, encode
from engine.wire.headers import H_RUN, H_STEP, H_TRIGGER, H_TYPE
from engine.wire.subjects import run_filter, run_subject

from ..harness import Harness
from ..measure import CpuMeter, run_loop
from ..workflows import BenchTick

TITLE = "rebuilding a run's context from its log"
PREFIX = "benchrb"
WORKFLOW = "Synthetic"
APPEND_BATCH = 1000
EVENTS: dict[str, Any] = {"StartEvent": StartEvent, "BenchTick": BenchTick}
SNAPSHOT_TAIL = 20  # records after the snapshot
SNAPSHOT_REPS = 15  # rounds of rebuilds from snapshots (one per size each; the median is reported)
NEIGHBOUR = 2  # records of the short run appended after each measured run (a start commit)
IDLE_S = 11.0  # wait before the rounds from snapshots (not in a quick run): nats-server drops a
# message block's cache 10 s after its last use (filestore.go defaultCacheBufferExpiration), so
# every size is read as a worker reads a run nobody touched lately, the newest one included


def reps_for(size: int, quick: bool) -> int:
    """Timed repetitions per size (the median is reported)."""
    if quick:
        return 2
    return 7 if size <= 1_000 else 5 if size <= 10_000 else 3


def synthetic_run(run_id: str, size: int) -> list[OutMessage]:
    """The ``size`` records of a synthetic run (``size`` ≥ 2)."""
    msgs = start_commit(PREFIX, WORKFLOW, run_id, StartEvent())
    i = 0
    while len(msgs) < size:
        trigger = len(msgs)  # the synthetic trigger: the record before (not checked by the fold)
        done = StepCompleted(step="tick", trigger=trigger, emitted=["BenchTick"], state={"i": i})
        base = {H_RUN: run_id, H_STEP: "tick", H_TRIGGER: str(trigger)}
        msgs.append(
            OutMessage(
                run_subject(PREFIX, WORKFLOW, run_id, "sys", "StepCompleted"),
                encode(done),
                {**base, H_TYPE: "StepCompleted"},
            )
        )
        if len(msgs) < size:
            msgs.append(
                OutMessage(
                    run_subject(PREFIX, WORKFLOW, run_id, "evt", "BenchTick"),
                    encode_event(BenchTick(i=i)),
                    {**base, H_TYPE: "BenchTick"},
                )
            )
        i += 1
    return msgs


async def rebuild(log: JetStreamLog, run_id: str) -> tuple[dict[str, float], int]:
    """Read, decode and fold one run; returns the phase times in ms and the records folded."""
    t0 = time.perf_counter()
    raws = await log.read(WORKFLOW, run_id)
    t1 = time.perf_counter()
    records = [decode_record(r, EVENTS) for r in raws]
    t2 = time.perf_counter()
    state = fold(records)
    t3 = time.perf_counter()
    phases = {"read_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3, "fold_ms": (t3 - t2) * 1e3}
    return phases, state.records


async def snapshot_rebuild(
    log: JetStreamLog, store: KvSnapshots, run_id: str
) -> tuple[float, int, dict[str, float]]:
    """Rebuild from the run's snapshot and its tail; returns (ms, records read from the log,
    ms per phase: ``kv_get_ms``, ``decode_ms``, ``tail_read_ms``, ``fold_ms``)."""
    t0 = time.perf_counter()
    data = await store.get(WORKFLOW, run_id)
    t1 = time.perf_counter()
    state = decode_snapshot(data) if data else None
    if state is None:
        raise RuntimeError(f"no usable snapshot of {run_id}")
    t2 = time.perf_counter()
    tail = await log.read(WORKFLOW, run_id, after_seq=state.seq)
    t3 = time.perf_counter()
    for raw in tail:
        state.apply(decode_record(raw, EVENTS))
    t4 = time.perf_counter()
    phases = {"kv_get_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3,
              "tail_read_ms": (t3 - t2) * 1e3, "fold_ms": (t4 - t3) * 1e3}  # fmt: skip
    return (t4 - t0) * 1e3, len(tail), phases


async def append_run(log: JetStreamLog, msgs: list[OutMessage], advance: Any = None) -> None:
    """Append a synthetic run's records in atomic batches of ``APPEND_BATCH``."""
    for i in range(0, len(msgs), APPEND_BATCH):
        await log.append(msgs[i : i + APPEND_BATCH])
        if advance is not None:
            advance(1)


async def write_snapshot(log: JetStreamLog, store: KvSnapshots, run_id: str, size: int) -> int:
    """Snapshot the fold of all but the last ``SNAPSHOT_TAIL`` records; returns its bytes."""
    raws = await log.read(WORKFLOW, run_id)
    state = fold(decode_record(r, EVENTS) for r in raws[: max(1, size - SNAPSHOT_TAIL)])
    data = encode_snapshot(state)
    await store.put(WORKFLOW, run_id, data)
    return len(data)


async def raw_replay(log: JetStreamLog, run_id: str, size: int) -> float:
    """Seconds for an ordered consumer to deliver the run's ``size`` messages."""
    done = asyncio.get_running_loop().create_future()
    count = 0

    async def cb(_: Any) -> None:
        nonlocal count
        count += 1
        if count == size and not done.done():
            done.set_result(None)

    t0 = time.perf_counter()
    sub = await log.js.subscribe(
        run_filter(PREFIX, WORKFLOW, run_id), stream=log.stream, ordered_consumer=True, cb=cb
    )
    try:
        async with asyncio.timeout(300):
            await done
        return time.perf_counter() - t0
    finally:
        await sub.unsubscribe()


def run(h: Harness) -> dict[str, Any]:
    o = h.options
    srv = h.server()
    results: dict[str, Any] = {}
    snapshotted: dict[str, tuple[str, int]] = {}  # size -> (run id, snapshot bytes)

    async def main() -> None:
        log = await JetStreamLog.connect(srv.url, prefix=PREFIX)
        store = await KvSnapshots.open(log.nc, prefix=PREFIX)
        try:
            for size in o.rebuild_sizes:
                run_id = f"n{size}-{uuid.uuid4().hex[:8]}"
                msgs = synthetic_run(run_id, size)
                reps = reps_for(size, o.quick)
                with h.task(
                    f"(d) rebuild {size:,}", len(msgs) // APPEND_BATCH + 1 + 2 * reps
                ) as advance:
                    t0 = time.perf_counter()
                    await append_run(log, msgs, advance)
                    append_s = time.perf_counter() - t0
                    await append_run(log, synthetic_run(f"nb{size}-{uuid.uuid4().hex[:8]}", NEIGHBOUR))
                    await rebuild(log, run_id)  # warm-up (connection, direct-get inbox, caches)
                    await raw_replay(log, run_id, size)
                    meter = CpuMeter({"driver": [os.getpid()], "server": [srv.pid or 0]})
                    phases, replays, folded = [], [], 0
                    cpu_rebuild = {"driver": 0.0, "server": 0.0}
                    cpu_raw = {"driver": 0.0, "server": 0.0}
                    for _ in range(reps):  # alternate, so drift hits both alike
                        meter.start()
                        p, folded = await rebuild(log, run_id)
                        for k, v in meter.stop().items():
                            cpu_rebuild[k] += v
                        phases.append(p)
                        advance(1)
                        meter.start()
                        replays.append(await raw_replay(log, run_id, size) * 1e3)
                        for k, v in meter.stop().items():
                            cpu_raw[k] += v
                        advance(1)
                snapshotted[str(size)] = (run_id, await write_snapshot(log, store, run_id, size))
                totals = [sum(p.values()) for p in phases]
                med = statistics.median
                results[str(size)] = {
                    "records": size,
                    "folded": folded,
                    "reps": reps,
                    "append_s": append_s,
                    "rebuild_ms": med(totals),
                    "rebuild_phases_ms": {k: med(p[k] for p in phases) for k in phases[0]},
                    "raw_replay_ms": med(replays),
                    "ratio": med(totals) / med(replays),
                    "cpu_us_per_record": {
                        "rebuild": {k: v / reps / size * 1e6 for k, v in cpu_rebuild.items()},
                        "raw_replay": {k: v / reps / size * 1e6 for k, v in cpu_raw.items()},
                    },
                }
            if not o.quick:
                await asyncio.sleep(IDLE_S)
            # From a snapshot: the sizes in turns, so drift on this machine hits them alike (a
            # rebuild from a snapshot takes milliseconds; a median of few would be noise). Then
            # the CPU of each size on its own (in turns, the server's could not be told apart):
            # the server's share varies with whether it holds the state of the message block
            # the tail starts in.
            snaps: dict[str, list[tuple[float, int, dict[str, float]]]] = {k: [] for k in snapshotted}
            cpu_of: dict[str, dict[str, float]] = {}
            meter = CpuMeter({"driver": [os.getpid()], "server": [srv.pid or 0]})
            with h.task("(d) from snapshots", SNAPSHOT_REPS + 1 + len(snapshotted)) as advance:
                for rep in range(SNAPSHOT_REPS + 1):  # the first round warms the KV bucket's path
                    for key, (run_id, _) in snapshotted.items():
                        got = await snapshot_rebuild(log, store, run_id)
                        if rep:
                            snaps[key].append(got)
                    advance(1)
                for key, (run_id, _) in snapshotted.items():
                    meter.start()
                    for _ in range(SNAPSHOT_REPS):
                        await snapshot_rebuild(log, store, run_id)
                    cpu_of[key] = {k: v / SNAPSHOT_REPS * 1e3 for k, v in meter.stop().items()}
                    advance(1)
            for key, (_, snap_bytes) in snapshotted.items():
                results[key].update(
                    snapshot_rebuild_ms=statistics.median(ms for ms, _, _ in snaps[key]),
                    snapshot_phases_ms={
                        k: statistics.median(p[k] for _, _, p in snaps[key]) for k in snaps[key][0][2]
                    },
                    snapshot_tail_records=snaps[key][0][1],
                    snapshot_bytes=snap_bytes,
                    snapshot_reps=len(snaps[key]),
                    snapshot_cpu_ms=cpu_of[key],
                )
        finally:
            await log.close()

    run_loop(main, uvloop=h.uvloop)
    snapshots: dict[str, Any] = {"available": True, "tail": SNAPSHOT_TAIL}
    if "1000" in results and "100000" in results:
        snapshots["ratio_100k_vs_1k"] = (
            results["100000"]["snapshot_rebuild_ms"] / results["1000"]["snapshot_rebuild_ms"]
        )
    else:
        snapshots["reason"] = "needs the 1,000 and 100,000 sizes"
    return {"sizes": o.rebuild_sizes, "results": results, "snapshots": snapshots}
