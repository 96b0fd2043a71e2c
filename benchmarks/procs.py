"""Child processes: worker processes that say when they are ready, and one-shot JSON commands.

All run ``sys.executable -m benchmarks.worker ...`` from the repository root with the root on
``PYTHONPATH``, so they import this checkout's ``engine``, ``services`` and ``benchmarks``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from services.supervisor import ChildProcess, NotReady, python_env

__all__ = ["ROOT", "Child", "run_json", "start_children"]

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class Child(ChildProcess):
    """``python -m benchmarks.worker ARGS``, started at once and supervised
    (``services.supervisor.ChildProcess``); its last output lines are kept.

    Args:
        args: the arguments after ``benchmarks.worker``.
        ready_text: the output line prefix that says it is ready (``wait_ready``).
        env: added to (or overriding) this process's environment.
    """

    def __init__(self, args: Sequence[str], ready_text: str, env: Mapping[str, str] | None = None) -> None:
        self.args = list(args)
        super().__init__(
            [sys.executable, "-m", "benchmarks.worker", *self.args],
            env=python_env(ROOT, extra=env),
            cwd=ROOT,
            ready=ready_text,
        )
        self.start()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> str:  # noqa: ASYNC109
        """Block until the ready line appears; returns it.

        Raises:
            RuntimeError: the process exited first or ``timeout`` seconds passed; with its output.
        """
        try:
            return super().wait_ready(timeout)
        except NotReady as exc:
            raise RuntimeError(
                f"benchmarks.worker {' '.join(self.args)} was not ready "
                f"(exit {exc.returncode}):\n{exc.output}"
            ) from None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:  # noqa: ASYNC109
        """SIGTERM, up to ``timeout`` seconds, then SIGKILL; the exit code."""
        return super().stop(timeout)


def start_children(
    args_list: Sequence[Sequence[str]], ready_text: str, env: Mapping[str, str] | None = None
) -> list[Child]:
    """Start several children at once (``env`` added to each one's environment) and wait until
    every one is ready (stopping them all if one fails)."""
    children = [Child(a, ready_text, env) for a in args_list]
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
        env=python_env(ROOT),
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
