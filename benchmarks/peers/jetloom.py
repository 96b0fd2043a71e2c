"""jetloom in the peers' comparison: one worker process of ``benchmarks.workflows:BenchChain`` on a
nats-server with the repository's ``nats.conf`` (default sync), or with ``sync_interval: always``,
driven through ``NatsClient`` from the harness's own process (``benchmarks.scenarios.chain``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..harness import Harness, machine_info
from ..scenarios.chain import ChainRig
from .engine import Sizes

__all__ = ["Jetloom"]


class _Rig:
    def __init__(self, rig: ChainRig) -> None:
        self.rig = rig

    def measure(self, *, runs: int, inflight: int, warmup: int) -> dict[str, Any]:
        # (ChainRig warms up by itself: warmup_runs(runs))
        r = self.rig.jetloom_round(runs=runs, inflight=inflight, label="jetloom")
        cpu = {"server": r.cpu["server"], "worker": r.cpu["engine"], "driver": r.cpu["driver"]}
        return {"latencies_s": r.latencies, "completed": r.completed, "wall_s": r.wall, "cpu_s": cpu}


class Jetloom:
    """jetloom on ``harness``'s default server, or its ``sync_interval: always`` one."""

    processes = {"server": "nats-server", "worker": "one jetloom worker process", "driver": "NatsClient (the harness)"}
    sizes = Sizes(sequential=200, inflight=2000)

    def __init__(self, harness: Harness, *, sync_always: bool) -> None:
        self.harness, self.sync_always = harness, sync_always
        if sync_always:
            self.key, self.title = "jetloom_sync_always", "jetloom, sync_interval: always"
            self.durability = "nats-server sync_interval: always (each write fsynced before its ack)"
            self.sizes = Sizes(sequential=200, inflight=1000)
        else:
            self.key, self.title = "jetloom", "jetloom"
            self.durability = "nats-server default sync_interval (2 min): no fsync per write"

    def server_pid(self) -> int:
        pid = self.harness.server(sync_always=self.sync_always).pid
        assert pid is not None
        return pid

    def versions(self) -> dict[str, str]:
        info = machine_info()
        return {"jetloom": info["git_commit"][:7], "nats-server": info["nats_server"], "nats-py": str(info["nats_py"])}

    @contextlib.contextmanager
    def rig(self, tmp: Path) -> Iterator[_Rig]:
        server = self.harness.server(sync_always=self.sync_always)
        with ChainRig(self.harness, server, uvloop=self.harness.uvloop, limit=False) as rig:
            yield _Rig(rig)
