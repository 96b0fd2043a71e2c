"""Session fixtures of the differential suite: the generated package of rewritten programs, one
nats-server and two worker processes serving every program's workflows (started once)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.natsserver import EmbeddedNats
from services.supervisor import ChildProcess, NotReady, python_env
from tests.compat.harness import PACKAGE, generate

ROOT = Path(__file__).resolve().parents[2]
HOST_START_TIMEOUT = 90.0  # seconds for both hosts to serve every workflow (2 shared cores)


@pytest.fixture(scope="session")
def compat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory holding the generated package ``jlcompat``."""
    return generate(tmp_path_factory.mktemp("compat-gen"))


@pytest.fixture(scope="session")
def compat_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(port=0, store_dir=tmp_path_factory.mktemp("compat-nats")) as server:
        yield server


class _AllServed:
    """A line predicate of ``ChildProcess.wait_line``, fed every output line once in order: true
    once the host has started (``jetloom worker ready``) or skipped each workflow it announced
    (``compat host targets=<n>``)."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0

    def __call__(self, line: str) -> bool:
        if line.startswith("compat host targets="):
            self.total = int(line.split("=", 1)[1])
        elif "jetloom worker ready" in line or line.startswith("compat host skipped"):
            self.done += 1
        return self.total is not None and self.done >= self.total


@pytest.fixture(scope="session")
def compat_hosts(compat_dir: Path, compat_nats: EmbeddedNats) -> Iterator[list[ChildProcess]]:
    """Two worker processes (tests/compat/host.py), each serving every workflow of the generated
    package on ``compat_nats``; ready once each has started or skipped every workflow."""
    hosts = [
        ChildProcess(
            [sys.executable, "-m", "tests.compat.host", PACKAGE, "--nats", compat_nats.url],
            env=python_env(ROOT, compat_dir),
            cwd=ROOT,
            tail=None,
        ).start()
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + HOST_START_TIMEOUT
        for host in hosts:
            try:
                host.wait_line(_AllServed(), timeout=max(0.1, deadline - time.monotonic()))
            except NotReady:
                raise AssertionError("compat host not ready; output:\n" + host.output()) from None
        yield hosts
    finally:
        for host in hosts:
            host.stop(timeout=10)
