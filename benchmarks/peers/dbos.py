"""DBOS: the library in the driver's process (the process that starts a workflow runs it), its
system database on Postgres (Debian's package, a throwaway cluster made with ``initdb`` and run
by ``pg_ctl`` as the ``postgres`` user in a temp dir, fsync on) or on a SQLite file."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .engine import Sizes
from .install import peers_python, pg_bin
from .procs import AppRig, free_port, version_of

__all__ = ["DbosPostgres", "DbosSqlite"]

PG_USER = "postgres"


def _as_pg(*cmd: str | Path) -> list[str]:
    """``cmd`` as the ``postgres`` user (Postgres refuses to run as root)."""
    bin_dir = pg_bin()
    assert bin_dir is not None, "postgresql is not installed (python -m benchmarks.peers install)"
    head, *rest = cmd
    return ["runuser", "-u", PG_USER, "--", str(bin_dir / str(head)), *map(str, rest)]


class DbosPostgres:
    key = "dbos_postgres"
    title = "DBOS on Postgres"
    durability = "Postgres fsync=on, synchronous_commit=on (WAL flushed before each commit returns)"
    processes = {"server": "postgres (postmaster and its backends)", "driver": "the app: DBOS runs the workflow where it is started"}
    sizes = Sizes(sequential=60, inflight=300)

    def versions(self) -> dict[str, str]:
        return {"postgres": version_of(*_as_pg("postgres", "--version"))}

    @contextlib.contextmanager
    def rig(self, tmp: Path) -> Iterator[AppRig]:
        data = tmp / "pg"
        data.mkdir()
        shutil.chown(tmp, PG_USER)
        shutil.chown(data, PG_USER)
        subprocess.run(_as_pg("initdb", "-D", data, "-U", PG_USER, "--auth=trust", "-E", "UTF8"),
                       check=True, capture_output=True)  # fmt: skip
        port = free_port()
        opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on"
        subprocess.run(_as_pg("pg_ctl", "-D", data, "-l", data / "log", "-o", opts, "-w", "start"),
                       check=True, capture_output=True)  # fmt: skip
        try:
            postmaster = int((data / "postmaster.pid").read_text().split()[0])
            url = f"postgresql://{PG_USER}@127.0.0.1:{port}/dbos_chain"
            yield AppRig("dbos", url, {"server": [postmaster]}, tmp / "dbos-pg-driver.log")
        finally:
            subprocess.run(_as_pg("pg_ctl", "-D", data, "-m", "fast", "-w", "stop"), capture_output=True)


class DbosSqlite:
    key = "dbos_sqlite"
    title = "DBOS on SQLite"
    durability = "SQLite file, SQLite's defaults as DBOS leaves them (rollback journal, synchronous=FULL: fsync at each commit)"
    processes = {"driver": "the app: DBOS runs the workflow where it is started, SQLite in-process"}
    sizes = Sizes(sequential=40, inflight=200)

    def versions(self) -> dict[str, str]:
        return {"sqlite": version_of(peers_python(), "-c", "import sqlite3; print(sqlite3.sqlite_version)")}

    @contextlib.contextmanager
    def rig(self, tmp: Path) -> Iterator[AppRig]:
        yield AppRig("dbos", f"sqlite:///{tmp / 'dbos.sqlite'}", {}, tmp / "dbos-sqlite-driver.log")
