"""Run affinity (``engine.runtime.affinity``) with real worker processes on a real nats-server: a
run's steps go to the process that owns the run, fan-outs still spread, and runs in flight while
workers die and join complete exactly once."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable

import pytest

from engine import NoLiveWorkerWarning
from engine.jetstream.log import FAST_PATH_ENV, JetStreamLog, consumer_name
from engine.jetstream.pull import HANDOFF_HOLD
from engine.jetstream.registry import KvRegistry
from engine.model.records import OutMessage
from engine.ports.log import Delivery
from engine.ports.registry import ServiceEntry
from engine.runtime.affinity import rendezvous_owner
from engine.wire.subjects import run_subject
from services.nats_client import NatsClient
from tests.integration.procs import WorkerProcess, eventually
from tests.integration.test_distributed import completions_of
from tests.workflows import Chain3, FanInOut

CHAIN = "tests.workflows:Chain3"
FAN = "tests.workflows:FanInOut"


def instance_of(w: WorkerProcess) -> str:
    """The registry instance id a worker printed on its ready line."""
    line = w.wait_for("jetloom worker ready")
    match = re.search(r"instance=(\w+)", line)
    assert match is not None, line
    return match.group(1)


async def members_registered(client: NatsClient, ws: list[WorkerProcess], *, handoffs: bool = True) -> None:
    """Wait until the registry lists exactly ``ws``, each with (or without) hand-off steps."""
    registry = await KvRegistry.open(client.log.nc)
    want = {instance_of(w) for w in ws}

    async def listed() -> bool:
        entries = await registry.services()
        return {e.instance for e in entries} == want and all(bool(e.handoff_steps) == handoffs for e in entries)

    await eventually(listed, timeout=30, what=f"the registry lists {sorted(want)}")


async def run_chains(client: NatsClient, n: int, *, delay: float = 0.0) -> list[str]:
    handlers = [await client.start(Chain3, text=f"r{i} a b", delay=delay, timeout=120) for i in range(n)]
    results = await asyncio.gather(*handlers)
    assert results == [{"n": 3, "source": f"r{i} a b"} for i in range(n)]
    return [h.run_id for h in handlers]


async def workers_of_runs(client: NatsClient, run_ids: list[str]) -> dict[str, set[str]]:
    """``{run id: pids of the processes that completed its steps}``."""
    out = {}
    for rid in run_ids:
        done = await completions_of(client.log, Chain3, rid)
        assert sorted(c.step for c in done) == ["count", "finish", "parse"]
        out[rid] = {c.worker.rsplit(":", 1)[1] for c in done}
    return out


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "nats-py-path"])
async def test_each_run_is_run_by_its_owner(
    nats_url: str, workers: Callable[..., WorkerProcess], fast_path: bool
) -> None:
    """Three workers with affinity (the default): every step of a run is completed by the process
    rendezvous hashing names over the three, on both nats-py paths (the hand-off's relay, inbox
    and acknowledgement differ)."""
    env = {FAST_PATH_ENV: "1" if fast_path else "0"}
    ws = [workers(CHAIN, nats_url, env=env) for _ in range(3)]
    pid_of = {instance_of(w): str(w.proc.pid) for w in ws}
    client = await NatsClient.connect(nats_url, fast_path=fast_path)
    try:
        await members_registered(client, ws)

        async def on_owner(run_ids: list[str]) -> bool:
            by_run = await workers_of_runs(client, run_ids)
            return all(pids == {pid_of[rendezvous_owner(r, list(pid_of)) or ""]} for r, pids in by_run.items())

        # (each worker's own view of the registry follows it a moment later)
        async def settled() -> bool:
            return await on_owner(await run_chains(client, 3))

        await eventually(settled, timeout=30, what="runs completed by their owners")
        run_ids = await run_chains(client, 30)
        by_run = await workers_of_runs(client, run_ids)
        for rid, pids in by_run.items():
            assert pids == {pid_of[rendezvous_owner(rid, list(pid_of)) or ""]}, rid
        assert len(set().union(*by_run.values())) == 3, "each process owns some of 30 runs"
    finally:
        await client.close()
    for w in ws:
        assert w.stop() == 0
        stopped = w.wait_for("jetloom worker stopped")
        handed = re.search(r"handoffs=(\d+)/(\d+)", stopped)
        assert handed is not None and int(handed.group(1)) + int(handed.group(2)) > 0, stopped


async def test_without_affinity_a_runs_steps_spread(nats_url: str, workers: Callable[..., WorkerProcess]) -> None:
    """``--no-affinity``: no hand-off steps in the registry, and steps land wherever the shared
    consumers deliver them (some run is completed by two processes)."""
    ws = [workers(CHAIN, nats_url, "--no-affinity") for _ in range(2)]
    async with await NatsClient.connect(nats_url) as client:
        await _spread_without_affinity(client, ws)


async def _spread_without_affinity(client: NatsClient, ws: list[WorkerProcess]) -> None:
    await members_registered(client, ws, handoffs=False)

    async def spread() -> bool:
        by_run = await workers_of_runs(client, await run_chains(client, 20))
        return any(len(pids) > 1 for pids in by_run.values())

    await eventually(spread, timeout=60, what="a run whose steps two processes completed")
    for w in ws:
        assert w.stop() == 0
        assert "handoffs=0/0" in w.wait_for("jetloom worker stopped")


async def test_fan_out_parts_spread_and_fan_in_stays_with_the_owner(
    nats_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    """The parts of a fan-out (``Jl-Fan-Out``) are not routed, so both processes square; the
    fan-in's triggers (one event per commit) are, so the owner joins them all."""
    ws = [workers(FAN, nats_url) for _ in range(2)]
    async with await NatsClient.connect(nats_url) as client:
        await _fan_out(client, ws)


async def _fan_out(client: NatsClient, ws: list[WorkerProcess]) -> None:
    pid_of = {instance_of(w): str(w.proc.pid) for w in ws}
    await members_registered(client, ws)
    handler = await client.start(FanInOut, n=40, timeout=60)
    assert await handler == [i * i for i in range(40)]
    done = await completions_of(client.log, FanInOut, handler.run_id)
    owner = pid_of[rendezvous_owner(handler.run_id, list(pid_of)) or ""]
    pids = {step: {c.worker.rsplit(":", 1)[1] for c in done if c.step == step} for step in ("split", "square", "join")}
    assert pids["square"] == set(pid_of.values())
    assert pids["join"] == {owner}


async def test_runs_in_flight_complete_once_while_workers_die_and_join(
    nats_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    """SIGKILL one of three workers and start a fourth while 60 runs are in flight: the dead
    worker's runs move to the others (its unsettled deliveries are redelivered and handled
    wherever they land; hand-offs sent to it before its entry expired too), the new one takes its
    share, and every run completes once: one RunCompleted, each step completed once."""
    args = ("--ack-wait", "1", "--registry-ttl", "2")
    ws = [workers(CHAIN, nats_url, *args) for _ in range(3)]
    async with await NatsClient.connect(nats_url) as client:
        await _die_and_join(client, ws, lambda: workers(CHAIN, nats_url, *args))


async def _die_and_join(client: NatsClient, ws: list[WorkerProcess], start: Callable[[], WorkerProcess]) -> None:
    await members_registered(client, ws)
    n = 60
    handlers = [await client.start(Chain3, text=f"k{i} a b", delay=0.3, timeout=120) for i in range(n)]

    async def some_done() -> bool:
        done = [await completions_of(client.log, Chain3, h.run_id) for h in handlers]
        return 5 <= sum(len(d) for d in done) < 3 * n - 20

    await eventually(some_done, timeout=60, what="some steps completed, many to go")
    ws[0].kill()
    joined = start()
    results = await asyncio.gather(*handlers)
    assert results == [{"n": 3, "source": f"k{i} a b"} for i in range(n)]
    joined_pid = str(joined.proc.pid)
    steps_of_joined = 0
    for h in handlers:
        raws = await client.log.read("Chain3", h.run_id)
        assert sum(r.subject.endswith(".sys.RunCompleted") for r in raws) == 1
        done = await completions_of(client.log, Chain3, h.run_id)
        keys = Counter((c.trigger, c.step) for c in done)
        assert sorted(c.step for c in done) == ["count", "finish", "parse"], keys
        steps_of_joined += sum(c.worker.endswith(f":{joined_pid}") for c in done)
    assert steps_of_joined > 0, "the worker that joined took runs over"


async def test_kv_registry_view_generation_moves_with_membership_only(nats_url: str) -> None:
    """``KvRegistryView.generation``: bumped when an entry comes, goes or changes its hand-off
    steps; not by a heartbeat that changes nothing else."""
    async with await NatsClient.connect(nats_url) as client:
        await _generation(await KvRegistry.open(client.log.nc))


async def _generation(registry: KvRegistry) -> None:
    view = await registry.view()
    try:
        entry = ServiceEntry(
            service="wf", instance="i1", host="h", pid=1, version="0", workflows=[], started_at="",
            handoff_steps=["a"],
        )  # fmt: skip

        async def moved_past(gen: int) -> bool:
            return view.generation > gen

        gen = view.generation
        await registry.put_service(entry)
        await eventually(lambda: moved_past(gen), timeout=10, what="the new entry counted")
        gen = view.generation
        entry.stats = {"steps": 1}
        await registry.put_service(entry)  # a heartbeat
        entry.handoff_steps = ["a", "b"]
        await registry.put_service(entry)
        await eventually(lambda: moved_past(gen), timeout=10, what="the changed hand-off steps counted")
        assert view.generation == gen + 1, "the heartbeat in between moved nothing"
        assert view.services["wf.i1"].handoff_steps == ["a", "b"]
        gen = view.generation
        await registry.remove_service(entry)
        await eventually(lambda: moved_past(gen), timeout=10, what="the removal counted")
        assert "wf.i1" not in view.services
    finally:
        await view.stop()


async def test_a_backlog_is_handled_once(nats_url: str, workers: Callable[..., WorkerProcess]) -> None:
    """300 runs started before any worker, then four workers of one trigger at a time (each
    first step 20 ms) joining one by one: each relays most of what it pulls to the owners, whose
    hand-offs pile up while the membership settles. Every run completes, each step once (an
    owner's bound on what it holds is tested below)."""
    async with await NatsClient.connect(nats_url) as client:
        with pytest.warns(NoLiveWorkerWarning):
            handlers = [await client.start(Chain3, text=f"b{i} a", delay=0.02, timeout=120) for i in range(300)]
        ws = [workers(CHAIN, nats_url, "--num-workers", "1", ready=False) for _ in range(4)]
        results = await asyncio.gather(*handlers)
        assert results == [{"n": 2, "source": f"b{i} a"} for i in range(300)]
        for h in handlers[::10]:
            done = await completions_of(client.log, Chain3, h.run_id)
            assert sorted(c.step for c in done) == ["count", "finish", "parse"]
    assert all(w.proc.poll() is None for w in ws)


class _To:
    """A ``RunRouter`` that names ``owner`` for every run (``None``: every run is this process's)."""

    def __init__(self, instance: str, owner: str | None) -> None:
        self.instance = instance
        self.owner = owner

    def route(self, run_id: str, subject: str) -> str | None:
        return self.owner


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "nats-py-path"])
async def test_hand_offs_settle_at_the_original_delivery_and_a_full_owner_hands_them_back(
    nats_url: str, fast_path: bool
) -> None:
    """Two logs on two connections: ``a`` hands every first delivery over to ``b``; ``b`` holds
    what it gets and settles nothing. ``b`` holds ``HANDOFF_HOLD`` times its pull window of them
    (its own deliveries and hand-offs), naks the rest at their JetStream ack subjects, and their
    redeliveries (attempt 2) are not routed: ``a`` handles them. Acks from ``b`` then settle the
    original deliveries: nothing is left pending on the consumer."""
    a = await JetStreamLog.connect(nats_url, fast_path=fast_path)
    b = await JetStreamLog.connect(nats_url, fast_path=fast_path)
    try:
        await a.ensure_consumer("Held", "s", ["Tick"])
        n, cap = 60, HANDOFF_HOLD * 2  # (max_in_flight 1, prefetch 1: a window of 2)
        a_got: list[Delivery] = []
        b_got: list[Delivery] = []
        feeds = [
            asyncio.create_task(_feed(a, _To("A", "B"), a_got)),
            asyncio.create_task(_feed(b, _To("B", None), b_got)),
        ]
        try:
            await eventually(lambda: _has(b, "s"), timeout=10, what="b consuming")
            for i in range(n):
                subject = run_subject(a.prefix, "Held", f"r{i}", "evt", "Tick")
                await a.append([OutMessage(subject, b"{}", {"Jl-Run": f"r{i}"})])

            async def settled() -> bool:
                return len(a_got) + len(b.consumers.loops[consumer_name("Held", "s")].held) == n

            await eventually(settled, timeout=20, what="every message held by b or handled by a")
            assert len(b.consumers.loops[consumer_name("Held", "s")].held) == cap
            assert a_got and all(d.attempt == 2 for d in a_got)
            assert a.consumers.handed_over >= n - 2 and b.consumers.taken_over >= cap - 2
            for d in list(b.consumers.loops[consumer_name("Held", "s")].held):
                # (relayed as delivered: the same subject, headers and payload, the ack apart)
                assert d.record.headers == {"Jl-Run": d.record.subject.split(".")[3]}, d.record.headers
                assert d.record.data == b"{}" and d.attempt == 1
                await d.ack()
            await eventually(lambda: _acked(a), timeout=10, what="b's acks settled the original deliveries")
        finally:
            for t in feeds:
                t.cancel()
            await asyncio.gather(*feeds, return_exceptions=True)
    finally:
        await a.close()
        await b.close()


async def _feed(log: JetStreamLog, router: _To, into: list[Delivery]) -> None:
    """Consume ``Held.s`` with ``router``: ``b`` (no owner named) keeps what it gets, ``a`` acks
    each delivery."""
    async for d in log.consume("Held", "s", max_in_flight=1, router=router):
        into.append(d)
        if router.owner is not None:
            await d.ack()


async def _has(log: JetStreamLog, step: str) -> bool:
    return consumer_name("Held", step) in log.consumers.loops


async def _acked(log: JetStreamLog) -> bool:
    info = await log.js.consumer_info(log.stream, consumer_name("Held", "s"))
    return info.num_ack_pending == 0 and info.ack_floor.stream_seq >= info.delivered.stream_seq > 0


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "nats-py-path"])
async def test_a_hand_off_to_a_process_that_is_gone_comes_back_at_once(nats_url: str, fast_path: bool) -> None:
    """A router that names an owner no process subscribes for (a worker killed before its registry
    entry expired): the server answers each hand-off with a no-responders status on its reply
    subject, the relaying process naks the delivery, and the redelivery (attempt 2, not routed)
    is handled there, without waiting out ``ack_wait`` (60 s here, past the test's timeout)."""
    log = await JetStreamLog.connect(nats_url, fast_path=fast_path, ack_wait=60)
    try:
        await log.ensure_consumer("Gone", "s", ["Tick"])
        got: list[Delivery] = []

        async def feed() -> None:
            async for d in log.consume("Gone", "s", max_in_flight=4, router=_To("A", "ghost")):
                got.append(d)
                await d.ack()

        task = asyncio.create_task(feed())
        try:
            for i in range(10):
                subject = run_subject(log.prefix, "Gone", f"g{i}", "evt", "Tick")
                await log.append([OutMessage(subject, b"{}", {"Jl-Run": f"g{i}"})])

            async def all_back() -> bool:
                return len(got) == 10

            await eventually(all_back, timeout=20, what="every delivery handled after its hand-off came back")
            assert all(d.attempt == 2 for d in got)
            assert log.consumers.handed_over == log.consumers.handoffs_returned == 10
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await log.close()
