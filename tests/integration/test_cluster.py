"""jetloom on a 3-node JetStream cluster (``services.natsserver.EmbeddedCluster``): replicas of
what set-up creates, an operator's stream left as configured, and the stream leader SIGKILLed
mid-run with real worker processes and a real control plane riding through the election."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import pytest
import tenacity
from nats.js.api import KeyValueConfig, StreamConfig

from engine.jetstream.connection import NatsSettings
from services.launcher import ControlPlaneServer, WorkerProcess
from services.natsserver import EmbeddedCluster
from services.supervisor import ChildProcess, NotReady, python_env
from tests.integration.procs import eventually

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
# A JetStream API request of the test itself (an R3 stream's creation on a fresh cluster took more
# than nats-py's 5 s on this 2-core machine under the load of other suites).
JS_TIMEOUT_S = 30
CHAIN = "tests.workflows:Chain3"


async def add_stream(js: Any, **config: Any) -> None:
    """The test's own stream creation, asked again when nats-py times out: on a cluster just
    started, a JetStream API request can be lost while the meta leader settles (seen once, a 30 s
    timeout right after every node reported healthy). Asking again with the same config is safe:
    the server answers an identical add with success."""
    async for attempt in tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(nats.errors.TimeoutError),
        stop=tenacity.stop_after_attempt(3),
        reraise=True,
    ):
        with attempt:
            await js.add_stream(**config)
# Every stream and bucket a worker and a control plane create (the sessions bucket on first use).
STREAMS = (
    "JETLOOM",
    "JETLOOM_DLQ",
    "KV_jetloom_services",
    "KV_jetloom_workflows",
    "KV_jetloom_snapshots",
    "KV_jetloom_sessions",
)


async def _replicas(cluster: EmbeddedCluster) -> dict[str, int]:
    nc = await nats.connect(cluster.urls.split(","))
    try:
        js = nc.jetstream(timeout=JS_TIMEOUT_S)
        return {name: (await js.stream_info(name)).config.num_replicas or 1 for name in STREAMS}
    finally:
        await nc.close()


class ControlPlaneCli:
    """``python -m services.cli control-plane`` in a supervised child process, ready when it
    says so."""

    def __init__(self, child: ChildProcess) -> None:
        self.child = child

    @classmethod
    async def start(cls, *args: str, env: dict[str, str]) -> tuple[ControlPlaneCli, str]:
        child = ChildProcess(
            [sys.executable, "-m", "services.cli", "control-plane", "--port", "0", *args],
            env=python_env(ROOT, extra=env),
            cwd=ROOT,
            ready=lambda line: "control plane ready api=" in line,
            tail=None,
        ).start()
        try:
            line = await child.await_ready(timeout=30)
        except NotReady:
            raise AssertionError("control plane exited before it was ready:\n" + child.output()) from None
        return cls(child), line.split("api=")[1].split()[0]

    async def stop(self) -> None:
        await self.child.astop(timeout=15)


@pytest.fixture
async def processes() -> AsyncIterator[list[WorkerProcess | ControlPlaneCli]]:
    started: list[WorkerProcess | ControlPlaneCli] = []
    yield started
    for p in started:
        if isinstance(p, WorkerProcess):
            p.kill()
            await p.stop(timeout=5)
        else:
            await p.stop()


@pytest.mark.parametrize(
    ("worker_env", "worker_args", "cp_env", "cp_args"),
    [
        # the flag (over JETLOOM_REPLICAS=1 in the environment: flags win)
        ({"replicas": 1}, ["--replicas", "3"], {"JETLOOM_REPLICAS": "1"}, ["--replicas", "3"]),
        # the environment variable alone
        ({"replicas": 3}, [], {"JETLOOM_REPLICAS": "3"}, []),
    ],
    ids=["flags-over-env", "env"],
)
async def test_replicas_3_gives_every_stream_and_bucket_three_replicas(
    nats_cluster: EmbeddedCluster,
    processes: list[Any],
    worker_env: dict[str, int],
    worker_args: list[str],
    cp_env: dict[str, str],
    cp_args: list[str],
) -> None:
    # A worker with all three URLs (its settings travel in JETLOOM_* variables, as the launcher
    # sends them; ``replicas`` there is JETLOOM_REPLICAS).
    settings = NatsSettings(url=nats_cluster.urls, **worker_env)
    w = await WorkerProcess.start(CHAIN, settings, args=worker_args, cwd=ROOT)
    processes.append(w)
    await w.wait_ready()
    cp, api = await ControlPlaneCli.start("--nats", nats_cluster.urls, *cp_args, env=cp_env)
    processes.append(cp)
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        assert (await http.get("/sessions")).status_code == 200  # (makes the sessions bucket)
        r = await http.post("/workflows/Chain3/runs?wait=true", json={"text": "a b c"})
        assert r.status_code in (200, 201), r.text
        assert r.json()["result"]["n"] == 3
    assert await _replicas(nats_cluster) == dict.fromkeys(STREAMS, 3)


async def test_an_operators_r3_stream_is_left_as_configured(
    nats_cluster: EmbeddedCluster, processes: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    nc = await nats.connect(nats_cluster.urls.split(","))
    js = nc.jetstream(timeout=JS_TIMEOUT_S)
    try:
        # The operator's own JETLOOM: R3, a week's max age, a description, a 5-minute duplicate
        # window, and none of the allow_* flags jetloom needs (it may turn those on).
        await add_stream(
            js,
            config=StreamConfig(
                name="JETLOOM",
                subjects=["jetloom.run.>"],
                num_replicas=3,
                max_age=7 * 86400,
                description="ops: jetloom runs",
                duplicate_window=300,
            ),
        )
        await js.create_key_value(KeyValueConfig(bucket="jetloom_workflows", replicas=3, history=5))
        # Started with the default --replicas 1: a worker process, and a control plane here.
        w = await WorkerProcess.start(CHAIN, NatsSettings(url=nats_cluster.urls), cwd=ROOT)
        processes.append(w)
        await w.wait_ready()
        caplog.set_level(logging.INFO, logger="jetloom.log")
        cp = ControlPlaneServer(NatsSettings(url=nats_cluster.urls), port=0, shutdown_grace=1.0)
        api = await cp.start()
        try:
            async with httpx.AsyncClient(base_url=api, timeout=30) as http:
                r = await http.post("/workflows/Chain3/runs?wait=true", json={"text": "x y"})
                assert r.status_code in (200, 201) and r.json()["result"]["n"] == 2, r.text
        finally:
            await cp.stop()

        info = await js.stream_info("JETLOOM")
        assert info.config.num_replicas == 3
        assert info.config.max_age == 7 * 86400
        assert info.config.description == "ops: jetloom runs"
        assert info.config.duplicate_window == 300
        assert info.config.subjects == ["jetloom.run.>"]
        raw = (await nc.request("$JS.API.STREAM.INFO.JETLOOM", b"")).data.decode()
        for flag in ("allow_direct", "allow_atomic", "allow_msg_schedules", "allow_msg_ttl"):
            assert f'"{flag}":true' in raw, flag  # (turned on: jetloom cannot work without them)
        kv = await js.stream_info("KV_jetloom_workflows")
        assert (kv.config.num_replicas, kv.config.max_msgs_per_subject) == (3, 5)
        # Newly created ones follow --replicas 1.
        assert (await js.stream_info("KV_jetloom_services")).config.num_replicas == 1

        # One line for each difference left alone; the first process also said what it turned on.
        said = w.output() + "\n" + caplog.text
        assert "stream JETLOOM has 3 replica(s), more than the 1 asked for: left as is" in said
        assert "stream JETLOOM keeps idempotency keys for 300s, jetloom would set 120s: left as is" in said
        assert "stream KV_jetloom_workflows has 3 replica(s), more than the 1 asked for: left as is" in said
        assert "stream JETLOOM: turning on allow_direct, allow_atomic, allow_msg_schedules, allow_msg_ttl" in w.output()
    finally:
        await nc.close()


async def test_a_lower_replica_count_is_reported_not_raised(nats_cluster: EmbeddedCluster, caplog: pytest.LogCaptureFixture) -> None:
    from engine.jetstream.log import JetStreamLog

    nc = await nats.connect(nats_cluster.urls.split(","))
    try:
        await add_stream(nc.jetstream(timeout=JS_TIMEOUT_S), name="JETLOOM_DLQ", subjects=["jetloom.dlq.>"], num_replicas=1)
        caplog.set_level(logging.INFO, logger="jetloom.log")
        log = await JetStreamLog.connect(NatsSettings(url=nats_cluster.urls, replicas=3))
        await log.close()
        assert (await nc.jetstream(timeout=JS_TIMEOUT_S).stream_info("JETLOOM_DLQ")).config.num_replicas == 1
        assert (await nc.jetstream(timeout=JS_TIMEOUT_S).stream_info("JETLOOM")).config.num_replicas == 3
        assert (
            "stream JETLOOM_DLQ has 1 replica(s), --replicas asks for 3: left as is; raise it with "
            "`nats stream edit JETLOOM_DLQ --replicas 3`"
        ) in caplog.text
    finally:
        await nc.close()


# ---- node loss ----------------------------------------------------------------------------------


async def _completions(http: httpx.AsyncClient, run_id: str) -> tuple[int, Counter[tuple[str, int]]]:
    """RunCompleted records and step completions per (step, trigger) in the run's log as the
    control plane lists it (a commit's orphans left out, ``engine.wire.commit``)."""
    r = await http.get(f"/runs/{run_id}/events")
    assert r.status_code == 200, r.text
    records = r.json()["records"]
    ends = sum(1 for rec in records if rec["type"] == "RunCompleted")
    steps: Counter[tuple[str, int]] = Counter(
        (rec["step"], rec["trigger"])
        for rec in records
        if rec["type"] == "StepCompleted" or rec.get("completes_step")
    )
    return ends, steps


async def _raw_run_completed(cluster: EmbeddedCluster) -> Counter[str]:
    """Every ``sys.RunCompleted`` stored in the stream, per run id (orphans included)."""
    nc = await nats.connect(cluster.urls.split(","))
    try:
        sub = await nc.jetstream(timeout=JS_TIMEOUT_S).subscribe("jetloom.run.Chain3.*.sys.RunCompleted", ordered_consumer=True)
        found: Counter[str] = Counter()
        pending = (await nc.jetstream(timeout=JS_TIMEOUT_S).stream_info("JETLOOM")).state.messages
        try:
            while pending:
                msg = await sub.next_msg(timeout=2)
                found[msg.subject.split(".")[3]] += 1
                pending = msg.metadata.num_pending
        except nats.errors.TimeoutError:
            pass
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


async def _node_loss(
    cluster: EmbeddedCluster, processes: list[Any], *, runs: int, during: int, delay: float, leader: bool = True
) -> None:
    """``runs`` runs started over HTTP (their first step sleeps ``delay``), then SIGKILL of the
    node that leads ``JETLOOM`` (``leader``) or of another one, ``during`` more runs started and
    every run polled while the cluster recovers; then the log is checked run by run."""
    settings = NatsSettings(url=cluster.urls, replicas=3)
    workers = [await WorkerProcess.start(CHAIN, settings, cwd=ROOT) for _ in range(2)]
    processes.extend(workers)
    for w in workers:
        await w.wait_ready()
    cp = ControlPlaneServer(settings, port=0, shutdown_grace=1.0)
    api = await cp.start()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=api, timeout=60) as http:

            async def call(method: str, url: str, **kw: Any) -> httpx.Response | None:
                r = await http.request(method, url, **kw)
                statuses[r.status_code] += 1
                if r.status_code >= 500 and r.status_code != 503:
                    failures.append(f"{method} {url}: {r.status_code} {r.text[:300]}")
                if r.status_code == 503:
                    assert "retry-after" in r.headers, r.headers
                    return None
                return r

            async def start(i: int) -> str:
                while True:  # (a 503 during the election: the client tries again, same run id)
                    r = await call("POST", "/workflows/Chain3/runs", params={"run_id": f"r{i}"}, json={"text": f"w{i} " * (i % 5 + 1), "delay": delay})
                    if r is not None:
                        assert r.status_code in (200, 201, 202), r.text
                        return r.json()["run_id"]
                    await asyncio.sleep(0.5)

            ids = [await start(i) for i in range(runs)]
            stream_leader = await cluster.leader_of("JETLOOM")
            victim = stream_leader if leader else (stream_leader + 1) % cluster.size
            cluster.kill(victim)  # SIGKILL, runs in flight
            # A replacement worker starting during the election rides through its set-up.
            replacement = await WorkerProcess.start(CHAIN, settings, cwd=ROOT)
            processes.append(replacement)
            workers.append(replacement)

            async def poll_all() -> None:
                while True:
                    done = 0
                    for run_id in list(ids):
                        r = await call("GET", f"/runs/{run_id}")
                        if r is not None and r.status_code == 200 and r.json()["status"] == "completed":
                            done += 1
                    if done == len(ids) and len(ids) == runs + during:
                        return
                    await asyncio.sleep(0.2)

            async def start_more() -> None:
                for i in range(runs, runs + during):
                    ids.append(await start(i))

            async with asyncio.timeout(120):
                await asyncio.gather(poll_all(), start_more(), replacement.wait_ready(timeout=60))
            assert not failures, failures[:5]

            assert await cluster.leader_of("JETLOOM") != victim
            # Exactly once: one RunCompleted per run, one completion per step and trigger, the
            # right result.
            for i, run_id in enumerate(ids):
                ends, steps = await _completions(http, run_id)
                assert ends == 1, (run_id, ends)
                assert sorted(s for s, _ in steps) == ["count", "finish", "parse"], (run_id, steps)
                assert set(steps.values()) == {1}, (run_id, steps)
                r = await http.get(f"/runs/{run_id}")
                assert r.json()["result"]["n"] == i % 5 + 1
            raw = await _raw_run_completed(cluster)
            assert raw == Counter(dict.fromkeys(ids, 1))

        # The killed node comes back on its ports and store, rejoins and catches up.
        await cluster.arestart(victim)
        nc = await nats.connect(cluster.urls.split(","))
        try:
            async def current() -> bool:
                info = await nc.jetstream(timeout=JS_TIMEOUT_S).stream_info("JETLOOM")
                peers = {info.cluster.leader} | {p.name for p in info.cluster.replicas or [] if p.current}
                return peers == set(cluster.server_names)
            await eventually(current, timeout=30, what="the restarted node is a current replica again")
        finally:
            await nc.close()
    finally:
        await cp.stop()
    assert statuses[500] == 0
    for w in workers:
        assert w.proc.returncode is None, w.output()  # rode through, did not die


async def test_stream_leader_sigkilled_mid_run_every_run_completes_exactly_once(
    nats_cluster: EmbeddedCluster, processes: list[Any]
) -> None:
    await _node_loss(nats_cluster, processes, runs=30, during=10, delay=0.5)


@pytest.mark.slow
async def test_stream_leader_sigkilled_under_heavier_load(nats_cluster: EmbeddedCluster, processes: list[Any]) -> None:
    await _node_loss(nats_cluster, processes, runs=150, during=50, delay=1.0)


@pytest.mark.slow
async def test_a_follower_node_sigkilled_mid_run(nats_cluster: EmbeddedCluster, processes: list[Any]) -> None:
    await _node_loss(nats_cluster, processes, runs=30, during=10, delay=0.5, leader=False)


# ---- the local cluster and the sync setting ---------------------------------------------------------


async def _varz(url: str, what: str = "varz") -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"{url}/{what}")).json()


async def test_jetloom_nats_cluster_sync_always_starts_three_synced_nodes(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "nats", "--cluster", "3", "--sync", "always",
        "--store-dir", str(tmp_path / "nats"),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            urls = (await proc.stdout.readline()).decode().strip()
        servers = urls.split(",")
        assert len(servers) == 3 and all(u.startswith("nats://127.0.0.1:") for u in servers), urls
        nc = await nats.connect(servers)
        try:
            js = nc.jetstream(timeout=JS_TIMEOUT_S)
            await add_stream(js, name="TRY", subjects=["try.>"], num_replicas=3)
            info = await js.stream_info("TRY")
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        finally:
            await nc.close()
        assert sorted(p.name for p in (tmp_path / "nats").iterdir()) == ["n1", "n2", "n3"]
    finally:
        proc.terminate()
        async with asyncio.timeout(20):
            assert await proc.wait() == 0


def test_sync_interval_always_reaches_the_server() -> None:
    from services.natsserver import EmbeddedNats

    with EmbeddedNats(sync_interval="always", extra_args=["-m", "-1"]) as server:
        config = asyncio.run(_varz(server.ports["monitoring"][0]))["jetstream"]["config"]
        assert config["sync_always"] is True
    with pytest.raises(ValueError, match="'always' or a duration"):
        EmbeddedNats(sync_interval="sometimes")


async def test_cluster_nodes_sync_always(tmp_path: Path) -> None:
    async with EmbeddedCluster(3, store_dir=tmp_path, sync_interval="always") as cluster:
        for node in cluster.nodes:
            varz = await _varz(node.ports["monitoring"][0])
            assert varz["jetstream"]["config"]["sync_always"] is True
            assert varz["server_name"] in cluster.server_names
            routez = await _varz(node.ports["monitoring"][0], "routez")
            peers = {r["remote_name"] for r in routez["routes"]}
            assert peers == set(cluster.server_names) - {varz["server_name"]}  # routed to both others


def test_deployment_nats_sync(tmp_path: Path) -> None:
    from services.launcher import load_deployment

    good = tmp_path / "good.toml"
    good.write_text('[nats]\nsync = "always"\n')
    assert load_deployment(good).nats.sync == "always"
    bad = tmp_path / "bad.toml"
    bad.write_text('[nats]\nsync = "sometimes"\n')
    with pytest.raises(ValueError, match="sync interval must be 'always' or a duration"):
        load_deployment(bad)


async def test_ready_is_503_while_the_run_stream_has_no_quorum(nats_cluster: EmbeddedCluster) -> None:
    """``/ready`` follows the run stream's leader: with two of three nodes SIGKILLed the R3
    stream has no quorum and no leader, so ``/ready`` says 503 (with the reason and
    ``Retry-After``) while ``/health`` stays 200; with the nodes back it is 200 again."""
    settings = NatsSettings(url=nats_cluster.urls, replicas=3)
    cp = ControlPlaneServer(settings, port=0, shutdown_grace=1.0)
    await cp.start()
    try:
        async with httpx.AsyncClient(base_url=cp.url, timeout=30) as http:
            r = await http.get("/ready")
            assert r.status_code == 200, r.text
            assert r.json()["leader"] in nats_cluster.server_names
            leader = await nats_cluster.leader_of("JETLOOM")
            # keep one node that does not lead the stream: the two lost ones take the quorum
            lost = [i for i in range(3) if i != (leader + 1) % 3]
            for i in lost:
                nats_cluster.kill(i)

            async def not_ready() -> bool:
                r = await http.get("/ready")
                return r.status_code == 503

            await eventually(not_ready, 60, "/ready 503 without the stream's quorum")
            r = await http.get("/ready")
            assert r.status_code == 503 and r.json()["ready"] is False and r.json()["error"]
            assert int(r.headers["retry-after"]) >= 1
            assert (await http.get("/health")).status_code == 200
            for i in lost:
                await nats_cluster.arestart(i)

            async def ready() -> bool:
                return (await http.get("/ready")).status_code == 200

            await eventually(ready, 60, "/ready 200 once the nodes are back")
    finally:
        await cp.stop()
