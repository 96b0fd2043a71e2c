"""Restate: restate-server (npm ``@restatedev/restate-server``, its native binary) with a temp base
dir, the Python SDK's deployment under hypercorn, registered through the admin API."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from . import PEERS_DIR
from .engine import Sizes
from .procs import AppRig, Proc, app_cmd, free_port, stopping, version_of, wait_port

__all__ = ["Restate"]


def server_binary() -> Path:
    """The native restate-server of the npm package (the package's ``bin`` is a node wrapper)."""
    found = sorted((PEERS_DIR / "npm" / "node_modules" / "@restatedev").glob("restate-server-linux-*/bin/restate-server"))
    return found[0] if found else PEERS_DIR / "npm" / "node_modules" / ".bin" / "restate-server"


class Restate:
    key = "restate"
    title = "Restate"
    durability = "RocksDB WAL fsync (bifrost local loglet, rocksdb-disable-wal-fsync = false: the default)"
    processes = {"server": "restate-server", "worker": "SDK deployment (hypercorn)", "driver": "aiohttp client to the ingress"}
    sizes = Sizes(sequential=100, inflight=600)

    def versions(self) -> dict[str, str]:
        return {"restate-server": version_of(server_binary(), "--version")}

    @contextlib.contextmanager
    def rig(self, tmp: Path) -> Iterator[AppRig]:
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
                groups = {"server": [server.pid], "worker": [sdk.pid]}
                yield AppRig("restate", f"http://127.0.0.1:{ingress}", groups, tmp / "restate-driver.log")
