"""The peers' processes seen from the harness: free ports, servers started and stopped, CPU time
of whole process trees, and one measurement with a driver process (``apps/drive.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

from . import APPS
from .install import peers_python

__all__ = ["AppRig", "Proc", "TreeMeter", "app_cmd", "drive", "free_port", "version_of", "wait_port"]

START_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: Proc | None = None, timeout: float = START_TIMEOUT_S) -> None:  # noqa: ASYNC109
    """Block until something accepts on 127.0.0.1:``port``.

    Raises:
        RuntimeError: ``proc`` exited first, or ``timeout`` seconds passed; with its last output.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s" + (f":\n{proc.tail()}" if proc else ""))


def version_of(*cmd: str | Path) -> str:
    """What ``cmd`` (e.g. ``server --version``) prints, stripped; for the results' versions."""
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def app_cmd(engine: str, role: str, *args: str | int) -> list[str]:
    """The command of a peer's process: ``ROLE`` of ``apps/<engine>_app.py`` in the peers' venv."""
    return [str(peers_python()), str(APPS / "peer_main.py"), engine, role, *map(str, args)]


class Proc:
    """A server or SDK process, its output in ``log`` (a file), stopped by ``stop()``.

    Args:
        name: what it is, for messages.
        cmd: the command.
        log: the file its stdout and stderr go to.
        env: extra environment variables.
        cwd: its working directory.
    """

    def __init__(
        self, name: str, cmd: Sequence[str | Path], log: Path, *, env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:  # fmt: skip
        self.name, self.log = name, log
        self._out: IO[bytes] = log.open("ab")
        self.popen = subprocess.Popen(
            [str(c) for c in cmd], stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, n: int = 30) -> str:
        """The last ``n`` lines of its output."""
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        """SIGTERM to its process group, up to ``timeout`` seconds, then SIGKILL."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._out.close()


class TreeMeter:
    """CPU seconds (user + system) of groups of process trees between ``start()`` and ``stop()``.

    Args:
        groups: group name → root process ids. A root's tree is the root, its live descendants
            and the descendants it has already reaped (``children_user``/``children_system``), so
            short-lived children such as Postgres's backends count too; a descendant that starts
            inside the window counts in full.
    """

    def __init__(self, groups: dict[str, Sequence[int]]) -> None:
        self.groups = {g: list(pids) for g, pids in groups.items()}
        self._start: dict[str, dict[int, float]] = {}

    @staticmethod
    def _tree(pid: int) -> dict[int, float]:
        out: dict[int, float] = {}
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return out
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system + t.children_user + t.children_system
        return out

    def _snap(self) -> dict[str, dict[int, float]]:
        snap: dict[str, dict[int, float]] = {}
        for g, pids in self.groups.items():
            snap[g] = {}
            for pid in pids:
                snap[g].update(self._tree(pid))
        return snap

    def start(self) -> None:
        self._start = self._snap()

    def stop(self) -> dict[str, float]:
        """``{group: cpu_seconds}`` since ``start()``."""
        end = self._snap()
        return {
            g: max(0.0, sum(v - self._start[g].get(pid, 0.0) for pid, v in end[g].items()))
            for g in self.groups
        }


def drive(
    cmd: Sequence[str], groups: dict[str, Sequence[int]], log: Path, *, timeout: float = 1800.0,  # noqa: ASYNC109
    env: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run a driver (``apps/drive.py``'s protocol) and measure it with ``groups`` plus the driver
    itself (group ``driver``).

    Returns ``{"latencies_s", "completed", "wall_s", "cpu_s": {group: seconds}}``.

    Raises:
        RuntimeError: the driver failed, or printed no result within ``timeout`` seconds.
    """
    with log.open("ab") as err:
        p = subprocess.Popen(
            list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        assert p.stdin is not None and p.stdout is not None
        deadline = time.monotonic() + timeout
        try:
            meter: TreeMeter | None = None
            for line in p.stdout:
                if line.strip() == "warm":
                    meter = TreeMeter({**groups, "driver": [p.pid]})
                    meter.start()
                    p.stdin.write("go\n")
                    p.stdin.flush()
                elif line.startswith("{") and meter is not None:
                    cpu = meter.stop()
                    result: dict[str, Any] = json.loads(line)
                    result["cpu_s"] = cpu
                    p.stdin.close()
                    p.wait(60)
                    return result
                if time.monotonic() > deadline:
                    break
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
    raise RuntimeError(f"driver {' '.join(cmd[-8:])} gave no result (exit {p.returncode}):\n{tail}")


class AppRig:
    """A peer measured by its own driver process: ``apps/<engine>_app.py drive --url URL ...``,
    with the CPU of ``groups`` (group → root pids) and of the driver.

    Args:
        engine: the app's engine name (``restate``, ``dbos``, ``temporal``).
        url: what the driver connects to.
        groups: the engine's other processes, e.g. ``{"server": [pid], "worker": [pid]}``.
        log: the file the driver's stderr goes to.
    """

    def __init__(self, engine: str, url: str, groups: dict[str, list[int]], log: Path) -> None:
        self.engine, self.url, self.groups, self.log = engine, url, groups, log

    def measure(self, *, runs: int, inflight: int, warmup: int) -> dict[str, Any]:
        cmd = app_cmd(self.engine, "drive", "--url", self.url, "--runs", runs, "--inflight", inflight, "--warmup", warmup)
        return drive(cmd, self.groups, self.log)


@contextlib.contextmanager
def stopping(*procs: Proc) -> Iterator[None]:
    """Stop ``procs`` (last first) on the way out."""
    try:
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()
