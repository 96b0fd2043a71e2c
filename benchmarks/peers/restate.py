"""Restate: restate-server (npm ``@restatedev/restate-server``, its native binary) with a temp base
dir, the Python SDK's deployment under hypercorn, registered through the admin API."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import PEERS_DIR
from .engine import Sizes
from .procs import Proc, app_cmd, drive, free_port, stopping, wait_port

__all__ = ["Restate"]


def server_binary() -> Path:
    """The native restate-server of the npm package (the package's ``bin`` is a node wrapper)."""
    found = sorted((PEERS_DIR / "npm" / "node_modules" / "@restatedev").glob("restate-server-linux-*/bin/restate-server"))
    return found[0] if found else PEERS_DIR / "npm" / "node_modules" / ".bin" / "restate-server"


class _Rig:
    def __init__(self, server: Proc, sdk: Proc, ingress: str, log: Path) -> None:
        self.server, self.sdk, self.ingress, self.log = server, sdk, ingress, log

    def measure(self, *, runs: int, inflight: int, warmup: int) -> dict[str, Any]:
        cmd = app_cmd("restate", "drive", "--url", self.ingress, "--runs", runs, "--inflight", inflight, "--warmup", warmup)
        return drive(cmd, {"server": [self.server.pid], "worker": [self.sdk.pid]}, self.log)


class Restate:
    key = "restate"
    title = "Restate"
    durability = "RocksDB WAL fsync (bifrost local loglet, rocksdb-disable-wal-fsync = false: the default)"
    processes = {"server": "restate-server", "worker": "SDK deployment (hypercorn)", "driver": "aiohttp client to the ingress"}
    sizes = Sizes(sequential=100, inflight=600)

    def versions(self) -> dict[str, str]:
        out = subprocess.run([str(server_binary()), "--version"], capture_output=True, text=True, timeout=30)
        return {"restate-server": out.stdout.strip()}

    @contextlib.contextmanager
    def rig(self, tmp: Path) -> Iterator[_Rig]:
        ingress, admin, fabric, sdk_port = free_port(), free_port(), free_port(), free_port()
        env = {
            "RESTATE_INGRESS__BIND_PORT": str(ingress),
            "RESTATE_ADMIN__BIND_PORT": str(admin),
            "RESTATE_BIND_PORT": str(fabric),
            "RESTATE_BIND_IP": "127.0.0.1",
            "RESTATE_ADMIN__QUERY_ENGINE__PGSQL_BIND_PORT": str(free_port()),
            "RESTATE_DISABLE_TELEMETRY": "true",
            "RESTATE_LOG_FILTER": "warn",
        }
        log = tmp / "restate.log"
        server = Proc(
            "restate-server",
            [server_binary(), "--base-dir", tmp / "restate-data", "--no-logo", "--listen-mode", "tcp"],
            log, env=env,
        )  # fmt: skip
        with stopping(server):
            wait_port(ingress, server)
            wait_port(admin, server)
            sdk = Proc("restate SDK", app_cmd("restate", "serve", "--url", f"127.0.0.1:{sdk_port}"), tmp / "restate-sdk.log")
            with stopping(sdk):
                wait_port(sdk_port, sdk)
                body = json.dumps({"uri": f"http://127.0.0.1:{sdk_port}"}).encode()
                req = urllib.request.Request(
                    f"http://127.0.0.1:{admin}/deployments", data=body, headers={"content-type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=60) as resp:
                    resp.read()
                yield _Rig(server, sdk, f"http://127.0.0.1:{ingress}", tmp / "restate-driver.log")
