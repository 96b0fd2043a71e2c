"""Fixtures of the differential suite: the generated package of rewritten programs (per session),
one nats-server and two worker processes serving every program's workflows (per module: started
once, for tests/compat/test_compat.py, and stopped when it is done rather than idling through the
rest of a whole-suite session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.natsserver import EmbeddedNats
from services.supervisor import ChildProcess
from tests.compat.harness import generate, start_hosts


@pytest.fixture(scope="session")
def compat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory holding the generated package ``jlcompat``."""
    return generate(tmp_path_factory.mktemp("compat-gen"))


@pytest.fixture(scope="module")
def compat_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(port=0, store_dir=tmp_path_factory.mktemp("compat-nats")) as server:
        yield server


@pytest.fixture(scope="module")
def compat_hosts(compat_dir: Path, compat_nats: EmbeddedNats) -> Iterator[list[ChildProcess]]:
    """Two worker processes (tests/compat/host.py), each serving every workflow of the generated
    package on ``compat_nats``; ready once each has started or skipped every workflow."""
    hosts = start_hosts(compat_dir, compat_nats.url)
    try:
        yield hosts
    finally:
        for host in hosts:
            host.stop(timeout=10)
