"""``jetloom dev`` supervises (issue 19, item 5): a worker killed with SIGKILL is logged and
restarted, and a run started afterwards completes; SIGINT stops every child (nats-server, workers)
and the command exits 0; nothing is left in the working directory."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from pathlib import Path

import psutil
import pytest

from engine import wait_exponential
from services.client import Client
from services.launcher import Launcher, WorkerProcess

ROOT = Path(__file__).resolve().parents[2]


class Dev:
    """A ``jetloom dev`` subprocess whose stderr lines are collected as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.err: list[str] = []
        self._changed = asyncio.Event()
        assert proc.stderr is not None
        self._reader = asyncio.create_task(self._read(proc.stderr))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.err.append(line.decode().rstrip())
            self._changed.set()

    async def line(self, pattern: str, timeout: float = 60) -> re.Match[str]:  # noqa: ASYNC109
        """The first stderr line matching ``pattern`` (waited for)."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.err:
                    if (m := re.search(pattern, line)) is not None:
                        return m
                self._changed.clear()
                if self._reader.done():
                    raise AssertionError(f"no line {pattern!r}; stderr:\n" + "\n".join(self.err))
                await self._changed.wait()


async def _start(cwd: Path, *args: str) -> tuple[Dev, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "dev", *args, "--port", "0", "--nats-port", "0",
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    dev = Dev(proc)
    assert proc.stdout is not None
    async with asyncio.timeout(90):
        ready = (await proc.stdout.readline()).decode()
    assert ready.startswith("jetloom dev ready"), (ready, dev.err)
    return dev, re.search(r"api=(\S+)", ready)[1]  # type: ignore[index]


async def _worker_pids(client: Client, other_than: int | None = None) -> list[int]:
    """Pids of the live workers in the registry, waiting until one other than ``other_than``
    is there."""
    async with asyncio.timeout(60):
        while True:
            pids = [e["pid"] for e in await client.services()]
            if pids and (other_than is None or any(p != other_than for p in pids)):
                return pids
            await asyncio.sleep(0.2)


async def test_a_killed_worker_is_restarted_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    work = tmp_path / "project"
    work.mkdir()
    dev, api = await _start(work, "--workflow", "tests.workflows:Chain3")
    try:
        children = psutil.Process(dev.proc.pid).children(recursive=True)
        assert any("nats-server" in c.name() for c in children), children
        async with Client(api) as client:
            assert await client.run("Chain3", text="a b") == {"n": 2, "source": "a b"}
            (first,) = await _worker_pids(client)
            os.kill(first, signal.SIGKILL)
            died = await dev.line(r"worker Chain3 \(pid (\d+)\) was killed by SIGKILL; restarting in ([\d.]+) s")
            assert int(died[1]) == first and float(died[2]) <= 1.0
            again = await dev.line(r"worker Chain3 restarted: pid (\d+) \(was (\d+)\)")
            assert int(again[2]) == first and int(again[1]) != first
            assert int(again[1]) in await _worker_pids(client, other_than=first)
            assert await client.run("Chain3", text="x y z") == {"n": 3, "source": "x y z"}
        children = psutil.Process(dev.proc.pid).children(recursive=True)
        dev.proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            code = await dev.proc.wait()
        assert code == 0, dev.err
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, alive  # nats-server and the worker exited with it
        assert "Traceback" not in "\n".join(dev.err)
        assert list(work.iterdir()) == []  # the store was a temporary directory, now removed
    finally:
        if dev.proc.returncode is None:
            dev.proc.kill()
            await dev.proc.wait()


async def test_data_dir_keeps_the_store_and_its_runs(tmp_path: Path) -> None:
    """With --data-dir the embedded server's store stays (DATA_DIR/nats) and a second dev on it
    still has the first one's runs."""
    work = tmp_path / "project"
    work.mkdir()
    data = tmp_path / "data"
    dev, api = await _start(work, "--workflow", "tests.workflows:Chain3", "--data-dir", str(data))
    try:
        async with Client(api) as client:
            handle = await client.start("Chain3", text="kept")
            assert await handle.result() == {"n": 1, "source": "kept"}
        dev.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await dev.proc.wait() == 0
    finally:
        if dev.proc.returncode is None:
            dev.proc.kill()
            await dev.proc.wait()
    assert (data / "nats" / "jetstream").is_dir() and list(work.iterdir()) == []
    dev, api = await _start(work, "--workflow", "tests.workflows:Chain3", "--data-dir", str(data))
    try:
        async with Client(api) as client:
            assert (await client.handle(handle.run_id).status())["status"] == "completed"
        dev.proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            assert await dev.proc.wait() == 0
    finally:
        if dev.proc.returncode is None:
            dev.proc.kill()
            await dev.proc.wait()


async def test_restarts_back_off_and_the_backoff_resets_once_a_worker_stayed_up(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``Launcher(supervise=True)``: the delay doubles with each death in a row (the engine's
    ``wait_exponential``), starts from the first again once the worker stayed up ``stable_after``
    seconds, and ``stop`` restarts nothing."""
    caplog.set_level(logging.INFO, logger="jetloom.launcher")

    def delays() -> list[float]:
        found = (re.search(r"restarting in ([\d.]+) s", r.getMessage()) for r in caplog.records)
        return [float(m[1]) for m in found if m is not None]

    async def kill_and_wait_restart(w: WorkerProcess, n: int) -> None:
        w.kill()
        async with asyncio.timeout(60):
            while launcher.restarts < n:
                await asyncio.sleep(0.02)
        await w.wait_ready()

    backoff = wait_exponential(multiplier=0.1, max=1)
    async with Launcher(nats_url, cwd=ROOT, supervise=True, backoff=backoff, stable_after=3.0) as launcher:
        (w,) = await launcher.launch_service("tests.workflows:Chain3", service="chain")
        await kill_and_wait_restart(w, 1)  # killed at once each time: up far less than 3 s
        await kill_and_wait_restart(w, 2)
        await kill_and_wait_restart(w, 3)
        assert delays() == [0.1, 0.2, 0.4]
        up = asyncio.get_running_loop().time()
        async with asyncio.timeout(30):
            while asyncio.get_running_loop().time() - up < 3.2:  # stays up past stable_after
                assert w.child.alive
                await asyncio.sleep(0.1)
        await kill_and_wait_restart(w, 4)
        assert delays() == [0.1, 0.2, 0.4, 0.1]
        last = w.pid
    assert launcher.restarts == 4 and not psutil.pid_exists(last)  # stopped, not restarted


async def test_a_workflow_that_does_not_import_is_two_lines_exit_2_and_leaves_nothing(tmp_path: Path) -> None:
    """Issue 19: the cause (the module tried, where it failed) and a hint, exit code 2, no
    traceback; nothing left in the working directory. ``--debug`` shows the dev traceback."""
    (tmp_path / "brokenflows.py").write_text("import json\n\nraise RuntimeError('no config here')\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "dev", "--workflow", "brokenflows:Flow",
        "--port", "0", "--nats-port", "0",
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode == 2, err.decode()
    lines = err.decode().splitlines()
    cause, hint = lines[-2:]
    assert cause.startswith("jetloom dev: worker ") and cause.endswith(
        f"exited before it was ready: cannot import 'brokenflows' (for brokenflows:Flow): "
        f"RuntimeError: no config here at {tmp_path / 'brokenflows.py'}:3"
    ), cause
    assert hint == f"  hint: fix the module (imported from {tmp_path}); --debug shows the traceback"
    assert "Traceback" not in err.decode() and out == b""
    # no store nor log of jetloom's (Python's own bytecode cache may be there)
    assert sorted(set(os.listdir(tmp_path)) - {"__pycache__"}) == ["brokenflows.py"]
