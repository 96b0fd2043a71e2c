"""Worker processes for integration tests: started with the real CLI, ready when they say so."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.supervisor import ChildProcess, NotReady, python_env

ROOT = Path(__file__).resolve().parents[2]
READY = "jetloom worker ready"


class WorkerProcess:
    """``python -m services.cli worker TARGET --nats URL`` in a supervised child process
    (``services.supervisor.ChildProcess``: ``child.signal(SIGSTOP)`` and the like for chaos).

    Every output line (stdout and stderr) is kept in ``self.lines``; ``env`` adds to (or
    overrides) this process's environment.
    """

    def __init__(self, target: str, nats_url: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.child = ChildProcess(
            [sys.executable, "-m", "services.cli", "worker", target, "--nats", nats_url, *args],
            env=python_env(ROOT, extra=env),
            cwd=ROOT,
            ready=lambda line: READY in line,
            tail=None,
        ).start()
        self.proc = self.child.proc

    @property
    def lines(self) -> list[str]:
        return self.child.lines

    @property
    def output(self) -> str:
        return self.child.output()

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """The first output line containing ``text``; raises with the output on timeout."""
        try:
            return self.child.wait_line(lambda line: text in line, timeout)
        except NotReady:
            raise AssertionError(f"worker never printed {text!r}; output:\n{self.output}") from None

    def wait_ready(self, timeout: float = 20.0) -> None:
        self.wait_for(READY, timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acks, in-flight triggers are left to redelivery."""
        self.child.kill()
        self.child.wait_exit(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        return self.child.stop(timeout)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = ""
) -> None:
    """Poll the async ``check`` every 50 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s: {what}")
