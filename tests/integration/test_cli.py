"""The ``jetloom`` HTTP commands, run as real processes against a real control plane."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.client import Client
from services.launcher import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]


async def jetloom(api: str, *args: str) -> tuple[int, str, str]:
    """Run ``python -m services.cli ARGS --url API``; (exit code, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        "--url",
        api,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_run_follow_json_streams_every_record_until_the_end(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker("tests.workflows:Chain3")
    code, out, err = await jetloom(api, "run", "Chain3", "-f", "text=a b c", "--follow", "--json")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert records[0]["type"] == "RunStarted" and records[-1]["type"] == "RunCompleted"
    assert records[-1]["data"]["event"]["result"] == {"n": 3, "source": "a b c"}
    rid = records[0]["data"]["run_id"]
    assert [r["seq"] for r in records] == [r["seq"] for r in await client.handle(rid).events()]

    code, out, _ = await jetloom(api, "run", "Chain3", "-f", "text=x y", "--follow")
    assert code == 0
    # progress lines since issue 19 (raw records stay with --json and `events`)
    assert "completed" in out and '"n": 2' in out and "step count done (trigger " in out

    code, out, _ = await jetloom(api, "events", rid, "--json")
    assert [r["seq"] for r in json.loads(out)] == [r["seq"] for r in records]
    code, out, _ = await jetloom(api, "runs", "--json", "--status", "completed")
    assert rid in {r["run_id"] for r in json.loads(out)["runs"]}
    code, out, _ = await jetloom(api, "runs")
    assert code == 0 and rid in out.split()  # the full run id (issue 19)
    code, out, _ = await jetloom(api, "services", "--json")
    assert [w["name"] for e in json.loads(out) for w in e["workflows"]] == ["Chain3"]
    code, out, _ = await jetloom(api, "workflows")
    assert code == 0 and "Chain3" in out and "parse(StartEvent)" in out


async def test_send_and_cancel_and_errors(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker("tests.workflows:Gate")
    await start_worker("tests.workflows:Ticker")
    code, out, err = await jetloom(api, "run", "Gate")
    assert code == 0, err
    rid = out.strip()
    code, out, err = await jetloom(
        api, "send", rid, '{"type": "Approval", "data": {"approved": true, "by": "cli"}}'
    )
    assert code == 0, err
    assert out.startswith("sent Approval")
    code, out, _ = await jetloom(api, "events", rid, "--follow", "--json")
    assert code == 0
    assert json.loads(out.splitlines()[-1])["data"]["event"]["result"] == {
        "approved": True,
        "by": "cli",
    }

    long = await client.start("Ticker", n=500, interval=0.05)
    code, out, _ = await jetloom(api, "cancel", long.run_id, "--reason", "enough")
    assert code == 0 and "cancelled" in out
    code, out, _ = await jetloom(api, "events", long.run_id, "--follow")
    assert code == 1 and "cancelled" in out  # following a run that did not complete exits 1

    code, _, err = await jetloom(api, "run", "Ticker", "-f", "n=oops")
    assert code == 1 and "'n'" in err and "422" in err
    code, _, err = await jetloom(api, "run", "Nope")
    assert code == 1 and "404" in err
    code, _, err = await jetloom(api, "run", "Ticker", "-f", "novalue")
    assert code == 2 and "KEY=VALUE" in err
    code, _, err = await jetloom(api, "send", rid, "not json")
    assert code == 2
    with socket.socket() as closed:  # bound, never listening, held open: connects are refused
        closed.bind(("127.0.0.1", 0))
        code, _, err = await jetloom(f"http://127.0.0.1:{closed.getsockname()[1]}", "runs")
    assert code == 2 and "cannot reach" in err and "hint: is it running?" in err  # exit 2 (issue 19)
    assert len(err.strip().splitlines()) == 2, err


async def test_control_plane_command_serves_the_api(nats_url: str) -> None:
    """``jetloom control-plane --port 0`` binds a port of its own choosing and prints its URL in
    its ready line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "control-plane", "--nats", nats_url, "--port", "0",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        ready = re.match(r"jetloom control plane ready api=(http://127\.0\.0\.1:(\d+)) ", line)
        assert ready is not None and int(ready[2]) > 0, line
        async with Client(ready[1]) as c:
            assert (await c.health())["nats"] is True  # serving once it says it is ready
            assert await c.workflows() == []
        proc.terminate()
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
