"""Install the peers where missing: a venv at ``.peers/venv`` with ``PY_PINS``, an npm prefix at
``.peers/npm`` with ``NPM_PINS``, and Debian's ``postgresql`` (``initdb``, ``pg_ctl``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from . import NPM_PINS, PEERS_DIR, PY_PINS

__all__ = ["install", "peers_python", "pg_bin"]


def peers_python() -> Path:
    """The peers' venv's interpreter."""
    return PEERS_DIR / "venv" / "bin" / "python"


def pg_bin() -> Path | None:
    """The directory of Postgres's server programs (Debian keeps them out of ``PATH``), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _run(*cmd: str | Path) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def install() -> None:
    """Install what is missing (idempotent: pip and npm skip what is there at the pinned version).

    Raises:
        subprocess.CalledProcessError: an install step failed.
    """
    PEERS_DIR.mkdir(exist_ok=True)
    if not peers_python().exists():
        _run(sys.executable, "-m", "venv", PEERS_DIR / "venv")
    _run(peers_python(), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PY_PINS)
    _run("npm", "install", "--prefix", PEERS_DIR / "npm", "--no-audit", "--no-fund", "-s", *NPM_PINS)
    if pg_bin() is None:
        _run("apt-get", "update", "-q")
        _run("apt-get", "install", "-y", "-q", "postgresql")
