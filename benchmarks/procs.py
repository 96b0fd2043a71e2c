"""Child processes: worker processes that say when they are ready, and one-shot JSON commands.

All run ``sys.executable -m benchmarks.worker ...`` from the repository root with the root on
``PYTHONPATH``, so they import this checkout's ``engine``, ``services`` and ``benchmarks``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "Child", "run_json", "start_children"]

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """``python -m benchmarks.worker ARGS`` in a child process; its output is kept in a tail
    buffer by a reader thread.

    Args:
        args: the arguments after ``benchmarks.worker``.
        ready_text: the output line prefix that says it is ready (``wait_ready``).
    """

    def __init__(self, args: Sequence[str], ready_text: str) -> None:
        self.args = list(args)
        self.ready_text = ready_text
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", *self.args],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.tail: deque[str] = deque(maxlen=60)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            if line.startswith(self.ready_text):
                self._ready.set()

    def output(self) -> str:
        return "\n".join(self.tail)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until the ready line appears.

        Raises:
            RuntimeError: the process exited first or ``timeout`` seconds passed; with its output.
        """
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(2)
                if self._ready.is_set():
                    return
                raise RuntimeError(
                    f"benchmarks.worker {' '.join(self.args)} was not ready "
                    f"(exit {self.proc.poll()}):\n{self.output()}"
                )

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


def start_children(args_list: Sequence[Sequence[str]], ready_text: str) -> list[Child]:
    """Start several children at once and wait until every one is ready (stopping them all if one
    fails)."""
    children = [Child(a, ready_text) for a in args_list]
    try:
        for c in children:
            c.wait_ready()
    except BaseException:
        for c in children:
            c.stop()
        raise
    return children


def run_json(args: Sequence[str], timeout: float = 1800.0) -> dict[str, Any]:
    """Run ``python -m benchmarks.worker ARGS`` to completion and parse its last output line as
    JSON.

    Raises:
        RuntimeError: it failed or printed no JSON; with its output.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmarks.worker {' '.join(args)} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result
