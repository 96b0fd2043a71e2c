"""``services.supervisor.ChildProcess`` on real child processes (small Python scripts): the ready
line, graceful and forced stops, kill, SIGSTOP, restart, output to a file, sync and async waits."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from services.supervisor import ChildProcess, NotReady, python_env

# Prints a ready line, then one line per second until SIGTERM; on SIGTERM prints a line and exits 0.
GRACEFUL = """
import signal, sys, time
def bye(*_):
    print("bye", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("starting", flush=True)
print("child ready pid=1", flush=True)
while True:
    time.sleep(1)
"""
# Ignores SIGTERM: only SIGKILL ends it.
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("child ready", flush=True)
while True:
    time.sleep(1)
"""


def child(script: str, **kwargs: Any) -> ChildProcess:
    return ChildProcess([sys.executable, "-c", script], ready="child ready", **kwargs)


def test_ready_line_output_and_graceful_stop(tmp_path: Path) -> None:
    seen: list[str] = []
    p = child(GRACEFUL, on_line=seen.append, output_file=tmp_path / "out.log").start()
    try:
        assert p.wait_ready(30) == "child ready pid=1"
        assert p.alive and p.returncode is None
        assert p.wait_line("start") == "starting"  # a kept line counts
        assert p.stop(10) == 0
    finally:
        p.kill()
    assert not p.alive and p.returncode == 0
    assert list(p.lines) == ["starting", "child ready pid=1", "bye"] == seen
    assert (tmp_path / "out.log").read_text().splitlines() == seen


def test_sigkill_after_the_grace_period() -> None:
    p = child(STUBBORN).start()
    p.wait_ready(30)
    assert p.stop(0.5) == -signal.SIGKILL


def test_exit_before_ready_raises_with_the_output() -> None:
    p = child("print('jetloom worker: no such workflow'); raise SystemExit(3)").start()
    with pytest.raises(NotReady) as caught:
        p.wait_ready(30)
    assert caught.value.returncode == 3 and "no such workflow" in caught.value.output
    assert p.wait_exit(5) == 3


def test_sigstop_keeps_it_alive_and_restart_starts_it_again() -> None:
    p = child(GRACEFUL).start()
    try:
        p.wait_ready(30)
        first = p.pid
        p.signal(signal.SIGSTOP)
        with pytest.raises(TimeoutError):
            p.wait_exit(0.3)
        assert p.alive
        p.signal(signal.SIGCONT)
        p.restart(10)
        assert p.pid != first and p.ready_line is None
        assert p.wait_ready(30) == "child ready pid=1"
        assert list(p.lines).count("child ready pid=1") == 2
    finally:
        p.kill()
        p.wait_exit(10)


def test_python_env() -> None:
    env = python_env("/a", Path("/b"), extra={"X": "1"})
    assert env["PYTHONPATH"].split(":")[:2] == ["/a", "/b"]
    assert env["PYTHONUNBUFFERED"] == "1" and env["X"] == "1"


async def test_async_ready_kill_and_stop() -> None:
    p = child(GRACEFUL).start()
    try:
        assert await p.await_ready(30) == "child ready pid=1"
        with pytest.raises(TimeoutError):
            await p.await_line("never printed", timeout=0.2)
        p.kill()
        assert await p.await_exit(10) == -signal.SIGKILL
        assert await p.astop() == -signal.SIGKILL  # already exited: its code
        await p.arestart()
        await p.await_ready(30)
        assert await p.astop(10) == 0
    finally:
        p.kill()


async def test_async_exit_before_ready_and_many_at_once() -> None:
    procs = [child(GRACEFUL).start() for _ in range(4)]
    try:
        await asyncio.gather(*(p.await_ready(30) for p in procs))
        assert await asyncio.gather(*(p.astop(10) for p in procs)) == [0] * 4
    finally:
        for p in procs:
            p.kill()
    failing = child("raise SystemExit(2)").start()
    with pytest.raises(NotReady):
        await failing.await_ready(30)
