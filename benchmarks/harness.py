"""The harness: options, the NATS servers shared by every scenario, progress, machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from services.natsserver import (
    DEFAULT_CONFIG,
    EmbeddedCluster,
    EmbeddedNats,
    find_nats_server_binary,
)

from .measure import uvloop_available
from .procs import ROOT

__all__ = ["Harness", "Options", "machine_info", "sync_always_config"]


@dataclass
class Options:
    """What to run and how big.

    Attributes:
        scenarios: scenario keys to run, in order (``a``..``g``, ``u`` = (a)+(b) without uvloop,
            ``p`` = jetloom's (a)+(b) with nats-py's fast path on and off, ``r`` = the chain on a
            3-node cluster, R3, beside one node, ``k`` = crash recovery).
        quick: tiny sizes (the smoke test); figures are then only a check that everything runs.
        runs: runs measured per chain measurement in (a) and one at a time in (h), split over
            the rounds (default 500, 100 a round; quick 12).
        rounds: alternating rounds the compared systems are measured in, in (a), (b) and (h)
            (default 5; quick 1): the machine's speed drifts within minutes, so a target takes
            the median of the per-round ratios (``benchmarks.targets``).
        throughput_runs: runs per throughput measurement in (b), (e), (g), (h), split over the
            rounds in (b) and (h) (default 10,000: 2,000 a round, 6,000 transitions, which the
            limit runs in about half a second; with 3,000 split five ways a round lasted 0.15 s,
            and one scheduling stall on a shared machine moved its ratio 4×; quick 24).
        inflight: runs in flight in (b), (e), (g) (default 100; quick 4).
        saturation: runs in flight for the saturated measurement of (b) and (g) (default 300;
            quick 8). (Until 12-01 jetloom's client followed each run with a consumer of its own
            and 500 hit nats-server's 1,000 consumers per stream; it now shares one per workflow,
            ``engine.jetstream.follow``, and 300 stays so that figures compare across dates.)
        fan_n: events fanned out and in by (c) (default 1,000; quick 20).
        fan_reps: fan runs measured per system (default 3; quick 1).
        rebuild_sizes: log sizes of (d) (default 100 … 100,000; quick 100 and 1,000).
        scale_workers: worker process counts of (e) (default 1, 2, 4, and 8 on 8+ cores).
        docindex_root: directory (f) indexes (default: the standard library; quick: its ``json``).
        retained_runs: finished runs added to the chain's streams after (b)'s measurements, which
            (b) then measures again at ``inflight`` (default 0: not measured; see
            ``ChainRig.retain``).
        sync_always: run (g) (the server with ``sync_interval: always``).
        uvloop: use uvloop in the driver, the workers and the peer (default: when installed).
        recovery_trials: SIGKILLs timed by (r) (default 5; quick 1).
        memory_runs: runs through the control plane while (m) reads the processes' RSS
            (default 10,000; quick 200).
        out: where the JSON, Markdown and PNGs go (default ``benchmarks/results``).
    """

    scenarios: list[str] = field(default_factory=lambda: list("abcdefguprkhm"))
    quick: bool = False
    runs: int = 500
    rounds: int = 5
    throughput_runs: int = 10_000
    inflight: int = 100
    saturation: int = 300
    fan_n: int = 1000
    fan_reps: int = 3
    rebuild_sizes: list[int] = field(default_factory=lambda: [100, 1_000, 10_000, 100_000])
    scale_workers: list[int] = field(default_factory=lambda: [1, 2, 4])
    docindex_root: str | None = None
    retained_runs: int = 0
    sync_always: bool = True
    uvloop: bool = True
    recovery_trials: int = 5
    memory_runs: int = 10_000
    out: Path = ROOT / "benchmarks" / "results"

    @classmethod
    def quick_sizes(cls, **overrides: Any) -> Options:
        base = cls(
            quick=True,
            runs=12,
            rounds=1,
            throughput_runs=24,
            inflight=4,
            saturation=8,
            fan_n=20,
            fan_reps=1,
            rebuild_sizes=[100, 1_000],
            scale_workers=[1, 2, 4],
            recovery_trials=1,
            memory_runs=200,
        )
        for k, v in overrides.items():
            setattr(base, k, v)
        return base

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def sync_always_config(directory: Path) -> Path:
    """Write a copy of the repository's ``nats.conf`` with ``sync_interval: always`` added to its
    ``jetstream`` block (every write is fsynced before it is acknowledged: the configuration the
    2025 Jepsen analysis of NATS 2.12 calls safe) and return its path."""
    assert DEFAULT_CONFIG is not None
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    new, n = re.subn(r"(?m)^(\s*jetstream\s*\{\s*)$", r"\1\n  sync_interval: always", text, count=1)
    if n != 1:
        raise RuntimeError(f"no `jetstream {{` block found in {DEFAULT_CONFIG}")
    path = directory / "nats-sync-always.conf"
    path.write_text(new, encoding="utf-8")
    return path


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def machine_info() -> dict[str, Any]:
    """Cores, CPU, OS, Python, library and server versions, and the git commit measured."""
    try:
        server = subprocess.run(
            [find_nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        server = ""
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "nats_server": server,
        "nats_py": _version("nats-py"),
        "llama_index_workflows": _version("llama-index-workflows"),
        "uvloop": _version("uvloop"),
        "msgspec": _version("msgspec"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


class Harness:
    """Shared state of one benchmark invocation: the options, the servers (started on first use,
    stopped by ``close()``), a temporary directory and the progress display.

    Args:
        options: what to run.
        console: where the progress display goes (default stderr); ``None`` shows none.
    """

    def __init__(self, options: Options, console: Console | None = None) -> None:
        self.options = options
        self.uvloop = options.uvloop and uvloop_available()
        self.tmp = Path(tempfile.mkdtemp(prefix="jetloom-bench-"))
        self._servers: dict[str, EmbeddedNats] = {}
        self._cluster: EmbeddedCluster | None = None
        self.progress = (
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            if console is not None
            else None
        )

    def server(self, *, sync_always: bool = False) -> EmbeddedNats:
        """The default server (repo ``nats.conf``, file storage, temp store), or the one with
        ``sync_interval: always``; each started once and shared by the scenarios."""
        key = "sync_always" if sync_always else "default"
        srv = self._servers.get(key)
        if srv is None:
            config = sync_always_config(self.tmp) if sync_always else DEFAULT_CONFIG
            srv = EmbeddedNats(port=0, store_dir=self.tmp / f"store-{key}", config=config)
            srv.start()
            self._servers[key] = srv
        return srv

    def cluster(self) -> EmbeddedCluster:
        """A local 3-node cluster (repo ``nats.conf``, file storage, temp stores), started once
        and shared by the scenarios."""
        if self._cluster is None:
            self._cluster = EmbeddedCluster(3, store_dir=self.tmp / "store-cluster")
            self._cluster.start()
        return self._cluster

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar for one measurement; yields ``advance(n)``."""
        if self.progress is None:
            yield lambda n=1: None
            return
        tid = self.progress.add_task(description, total=total)
        try:
            yield lambda n=1: self.progress.advance(tid, n)  # type: ignore[union-attr]
        finally:
            if total:
                self.progress.update(tid, completed=total)
            self.progress.stop_task(tid)

    def __enter__(self) -> Harness:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        for srv in self._servers.values():
            srv.stop()
        self._servers.clear()
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        shutil.rmtree(self.tmp, ignore_errors=True)
