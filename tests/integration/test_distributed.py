"""Distributed execution against a real nats-server and real worker processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

import msgspec
import nats
import pytest

from engine import NoLiveWorkerWarning, WorkflowRuntimeError, fold
from engine.jetstream.log import FAST_PATH_ENV, JetStreamLog
from engine.model.records import RawRecord, Record, StepCompleted, completed_step
from engine.wire.codec import decode_record
from engine.wire.headers import H_WORKER
from services.nats_client import NatsClient
from services.natsserver import EmbeddedNats
from tests.integration.procs import WorkerProcess, eventually
from tests.workflows import Chain3, FanInOut, Progress

CHAIN = "tests.workflows:Chain3"
FAN = "tests.workflows:FanInOut"


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[NatsClient]:
    c = await NatsClient.connect(nats_url)
    try:
        yield c
    finally:
        await c.close()


async def records_of(log: JetStreamLog, workflow: type, run_id: str) -> list[Record]:
    return [decode_record(r, workflow.events) for r in await log.read(workflow.workflow_name, run_id)]


class Completion(NamedTuple):
    trigger: int
    step: str
    worker: str
    consumed: list[int]


def completions(raws: list[RawRecord], workflow: type) -> list[Completion]:
    """Every step completion in a run's log: a ``StepCompleted``, or the event of a one-message
    commit (its worker in ``Jl-Worker``)."""
    out = []
    for raw in raws:
        rec = decode_record(raw, workflow.events)
        done = completed_step(rec)
        if done is None:
            continue
        if isinstance(rec.body, StepCompleted):
            out.append(Completion(*done, rec.body.worker, list(rec.body.consumed)))
        else:
            out.append(Completion(*done, raw.headers[H_WORKER], []))
    return out


async def completions_of(log: JetStreamLog, workflow: type, run_id: str) -> list[Completion]:
    return completions(await log.read(workflow.workflow_name, run_id), workflow)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "nats-py-path"])
async def test_three_step_chain_across_two_worker_processes(
    nats_url: str, workers: Callable[..., WorkerProcess], fast_path: bool
) -> None:
    """Also with the nats-py fast path off in the workers and the client
    (``JETLOOM_NATS_FASTPATH=0``): the branches a client that cannot be tapped takes."""
    env = {FAST_PATH_ENV: "1" if fast_path else "0"}
    w1, w2 = workers(CHAIN, nats_url, env=env), workers(CHAIN, nats_url, env=env)
    client = await NatsClient.connect(nats_url, fast_path=fast_path)
    try:
        await _chain_across(client, w1, w2)
    finally:
        await client.close()


async def _chain_across(client: NatsClient, w1: WorkerProcess, w2: WorkerProcess) -> None:
    handlers = [await client.start(Chain3, text=f"w{i} x y", delay=0.02, timeout=60) for i in range(30)]
    results = await asyncio.gather(*handlers)
    assert results == [{"n": 3, "source": f"w{i} x y"} for i in range(30)]

    streamed = [ev async for ev in client.attach(Chain3, handlers[0].run_id).stream_events()]
    assert streamed[:2] == [Progress(stage="parsed"), Progress(stage="counted")]

    pids = set()
    for h in handlers:
        done = await completions_of(client.log, Chain3, h.run_id)
        assert sorted(c.step for c in done) == ["count", "finish", "parse"]
        pids.update(c.worker.rsplit(":", 1)[1] for c in done)
    assert pids == {str(w1.proc.pid), str(w2.proc.pid)}, "both worker processes took steps"


async def test_fan_out_fan_in_across_two_worker_processes(
    nats_url: str, client: NatsClient, workers: Callable[..., WorkerProcess]
) -> None:
    workers(FAN, nats_url)
    workers(FAN, nats_url)
    handler = await client.start(FanInOut, n=40, timeout=60)
    assert await handler == [i * i for i in range(40)]
    records = await records_of(client.log, FanInOut, handler.run_id)
    done = await completions_of(client.log, FanInOut, handler.run_id)
    steps = Counter(c.step for c in done)
    # Every square ran; join triggers still queued when the run completed are skipped, as in
    # llama-index-workflows, where a StopEvent cancels the rest of the run.
    assert steps["split"] == 1 and steps["square"] == 40 and 1 <= steps["join"] <= 40
    consumed = [s for c in done for s in c.consumed]
    # (a commit refused for a stale cache leaves the messages sent with its head as orphans)
    orphans = fold(records).orphans
    assert sorted(consumed) == [r.seq for r in records if r.type == "Squared" and r.seq not in orphans]
    assert len({c.worker for c in done if c.step == "square"}) == 2


async def test_worker_killed_mid_run_is_finished_by_a_restarted_worker(
    nats_url: str, client: NatsClient, workers: Callable[..., WorkerProcess]
) -> None:
    first = workers(FAN, nats_url, "--ack-wait", "1")
    handler = await client.start(FanInOut, n=30, timeout=120)

    async def some_squares_done() -> bool:
        done = await completions_of(client.log, FanInOut, handler.run_id)
        return 4 <= sum(c.step == "square" for c in done) < 30

    await eventually(some_squares_done, what="the first worker completed some squares")
    first.kill()
    before = await completions_of(client.log, FanInOut, handler.run_id)
    assert fold(await records_of(client.log, FanInOut, handler.run_id)).status == "running"

    workers(FAN, nats_url, "--ack-wait", "1")
    assert await handler == [i * i for i in range(30)]

    done = await completions_of(client.log, FanInOut, handler.run_id)
    keys = Counter((c.trigger, c.step) for c in done)
    assert all(n == 1 for n in keys.values()), f"a completion appears twice: {keys.most_common(3)}"
    steps = Counter(c.step for c in done)
    assert steps["split"] == 1 and steps["square"] == 30 and 1 <= steps["join"] <= 30
    assert len({c.worker for c in done}) == 2
    assert {(c.trigger, c.step) for c in before} <= set(keys)


async def test_core_subscription_sees_every_record_in_order_and_readable(
    nats_url: str, client: NatsClient, workers: Callable[..., WorkerProcess]
) -> None:
    workers(CHAIN, nats_url)
    nc = await nats.connect(nats_url)
    seen: list[tuple[str, bytes]] = []
    done = asyncio.Event()

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        seen.append((msg.subject, msg.data))
        if msg.subject.endswith(".sys.RunCompleted"):
            done.set()

    await nc.subscribe("jetloom.run.>", cb=on_msg)
    handler = await client.start(Chain3, text="hello readable world", timeout=60)
    await handler
    await asyncio.wait_for(done.wait(), 10)
    await nc.close()

    logged = await client.log.read("Chain3", handler.run_id)
    # A core subscriber sees every publish, also a commit re-sent after the stream refused or
    # dropped the first try (README, "what a core subscription sees"): such a repeat carries the
    # same subject and bytes. Apart from repeats it sees exactly the log, in its order.
    assert set(seen) <= {(r.subject, r.data) for r in logged}
    distinct = list(dict.fromkeys(seen))
    assert distinct == [(r.subject, r.data) for r in logged]
    seen = distinct
    types = [s.split(".", 4)[4] for s, _ in seen]
    assert types == [
        "sys.RunStarted",
        "evt.StartEvent",
        "sys.StepCompleted",
        "evt.Parsed",
        "out.Progress",
        "sys.StepCompleted",
        "evt.Counted",
        "out.Progress",
        "sys.RunCompleted",  # finish's whole commit (a one-message commit)
    ]
    payloads = [msgspec.json.decode(d) for _, d in seen]
    assert payloads[1] == {"$type": "StartEvent", "text": "hello readable world"}
    assert payloads[3] == {"$type": "Parsed", "words": ["hello", "readable", "world"]}
    assert payloads[-1]["event"]["result"] == {"n": 3, "source": "hello readable world"}


async def test_undecodable_message_goes_to_dead_letter_and_worker_carries_on(
    nats_url: str, client: NatsClient, workers: Callable[..., WorkerProcess]
) -> None:
    worker = workers(CHAIN, nats_url)
    ok = await client.start(Chain3, text="before", timeout=60)
    await ok
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.publish(f"jetloom.run.Chain3.{ok.run_id}.evt.Parsed", b"{not json")
    await js.publish(f"jetloom.run.Chain3.{ok.run_id}.evt.Counted", b'{"n": "three"}')
    await nc.close()

    async def two_dead_letters() -> bool:
        return len(await client.log.dead_letters()) == 2

    await eventually(two_dead_letters, what="both bad messages dead-lettered")
    letters = {d.original_subject.rsplit(".", 1)[1]: d for d in await client.log.dead_letters()}
    assert letters["Parsed"].data == b"{not json" and "Parsed" in letters["Parsed"].reason
    assert letters["Parsed"].consumer == "count"
    assert "n" in letters["Counted"].reason and letters["Counted"].consumer == "finish"

    after = await client.start(Chain3, text="after the bad ones", timeout=60)
    assert (await after)["n"] == 4
    assert "dead-lettered" in worker.output
    assert worker.stop() == 0
    assert "dead_lettered=2" in worker.output


async def test_run_started_before_any_worker_waits_in_jetstream(
    nats_server: EmbeddedNats, client: NatsClient, workers: Callable[..., WorkerProcess]
) -> None:
    with pytest.warns(NoLiveWorkerWarning, match="'Chain3'"):  # the run waits for a worker: said so
        handler = await client.start(Chain3, text="queued run", timeout=60)
    await eventually(
        lambda: _has_records(client.log, handler.run_id), what="start commit stored"
    )
    assert not handler.done()
    workers(CHAIN, nats_server.url)
    assert (await handler)["source"] == "queued run"


async def _has_records(log: JetStreamLog, run_id: str) -> bool:
    return len(await log.read("Chain3", run_id)) >= 2


@pytest.mark.slow
async def test_worker_killed_repeatedly_during_a_large_fan_out(
    nats_url: str, client: NatsClient, workers: Callable[..., WorkerProcess]
) -> None:
    """Heavier variant (make test-slow): SIGKILL the only worker five times in one run."""
    n = 150
    with pytest.warns(NoLiveWorkerWarning, match="'FanInOut'"):  # its worker starts below
        handler = await client.start(FanInOut, n=n, timeout=300)
    for round_ in range(5):
        worker = workers(FAN, nats_url, "--ack-wait", "1")
        target = (round_ + 1) * n // 6

        async def progressed(target: int = target) -> bool:
            done = await completions_of(client.log, FanInOut, handler.run_id)
            return sum(c.step == "square" for c in done) >= target

        await eventually(progressed, timeout=60, what=f"{target} squares done")
        worker.kill()
    workers(FAN, nats_url, "--ack-wait", "1")
    assert await handler == [i * i for i in range(n)]
    done = await completions_of(client.log, FanInOut, handler.run_id)
    keys = Counter((c.trigger, c.step) for c in done)
    assert all(v == 1 for v in keys.values())
    steps = Counter(c.step for c in done)
    assert steps["split"] == 1 and steps["square"] == n and 1 <= steps["join"] <= n


async def test_a_worker_of_another_version_fails_the_run_with_workflow_version_error(
    nats_url: str, client: NatsClient, workers: Callable[..., WorkerProcess]
) -> None:
    """A run begun by one version of a workflow (``parse`` and ``count`` ran in a worker process)
    is picked up by a worker process of a version without ``count`` or ``Parsed``: its first
    delivery (``Counted``, to ``finish``) makes it check its class against the log, and it fails
    the run with ``WorkflowVersionError`` naming what it lacks."""
    old = workers(CHAIN, nats_url, "--step", "parse", "--step", "count")
    handler = await client.start(Chain3, text="a b", timeout=60)

    async def counted() -> bool:
        return any(c.step == "count" for c in await completions_of(client.log, Chain3, handler.run_id))

    await eventually(counted, what="the old version's count step ran")
    assert old.stop() == 0
    new = workers("tests.workflows:Chain3Renamed", nats_url)
    with pytest.raises(WorkflowRuntimeError, match="written by another version"):
        await handler
    st = fold(await records_of(client.log, Chain3, handler.run_id))
    assert st.status == "failed" and st.error is not None
    assert st.error.error_type == "engine.model.errors.WorkflowVersionError"
    assert "steps in the log that Chain3Renamed lacks: count" in st.error.message
    assert "neither accepts nor produces: Parsed" in st.error.message
    assert "lacks: count" in new.wait_for("written by another version")  # the worker's log says so
