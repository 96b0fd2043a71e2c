"""``jetloom dev --sync``: the embedded server's JetStream ``sync_interval`` (issue 16, part 9), the
flag winning over the deployment file's ``[nats] sync``; read back from the server's ``/varz``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


async def _dev(tmp_path: Path, *flags: str) -> tuple[dict[str, str], dict[str, object]]:
    """Start ``jetloom dev`` on a file whose ``[nats] sync`` is ``2m`` (with ``flags``); the
    fields of its ready line and the server's JetStream config (``/varz``); stopped with SIGINT
    after."""
    deployment = tmp_path / "jetloom.toml"
    deployment.write_text(
        f'root = "{ROOT}"\n[nats]\nsync = "2m"\n'
        '[[services]]\nname = "chain"\nworkflow = "tests.workflows:Chain3"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "dev", str(deployment),
        "--port", "0", "--nats-port", "0", "--store-dir", str(tmp_path / "nats"), *flags,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("jetloom dev ready"), line
        fields = dict(part.split("=", 1) for part in line.split()[3:])
        async with httpx.AsyncClient(timeout=5) as http:
            varz = (await http.get(f"{fields['monitor']}/varz")).json()
        return fields, varz["jetstream"]["config"]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(60):
                await proc.communicate()


async def test_dev_takes_sync_from_the_file(tmp_path: Path) -> None:
    fields, config = await _dev(tmp_path)
    assert fields["workers"] == "1"
    assert config.get("sync_always", False) is False and config["sync_interval"] == 120 * 10**9


async def test_dev_sync_flag_wins_over_the_file(tmp_path: Path) -> None:
    fields, config = await _dev(tmp_path, "--sync", "always")
    assert fields["workers"] == "1"
    assert config["sync_always"] is True


async def test_a_bad_sync_value_is_one_clear_error(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "dev", "--workflow", "tests.workflows:Chain3", "--sync", "sometimes",
        "--store-dir", str(tmp_path / "nats"),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "'always' or a duration" in err.decode() and "Traceback" not in err.decode()
