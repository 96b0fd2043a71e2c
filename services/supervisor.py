"""One supervisor for jetloom's child processes: the launcher's and ``jetloom dev``'s workers,
the test suite's workers and control planes, and the benchmark harness' processes.

A :class:`ChildProcess` starts a command with its environment and working directory, reads its
output (stdout and stderr, merged) line by line in a thread of its own, knows when it has said it
is ready, and stops it: SIGTERM, then SIGKILL after a grace period. The same object serves
blocking callers (``wait_ready``, ``stop``) and asyncio callers (``await_ready``, ``astop``), so
a test, a benchmark and the launcher drive their processes the same way::

    child = ChildProcess(
        [sys.executable, "-m", "services.cli", "worker", "app:Flow"],
        env=python_env(root),
        cwd=root,
        ready="jetloom worker ready",
    ).start()
    await child.await_ready(timeout=60)
    ...
    code = await child.astop(timeout=20)

Chaos tests signal the process directly: ``child.pid``, ``child.kill()``, ``child.signal(SIGSTOP)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal as signals
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

__all__ = ["ChildProcess", "LineMatch", "NotReady", "WorkerStartError", "python_env"]

logger = logging.getLogger("jetloom.supervisor")

READY_TIMEOUT = 60.0  # seconds a child may take to say it is ready
STOP_TIMEOUT = 20.0  # seconds a child may take to exit after SIGTERM
KILL_TIMEOUT = 10.0  # seconds to wait for the exit after SIGKILL (a zombie is reaped at once)

LineMatch = str | Callable[[str], bool]
"""A line a caller waits for: a prefix the line starts with, or a predicate over the line."""


def python_env(*paths: str | Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process' environment for a Python child: ``paths`` first on ``PYTHONPATH`` (then the
    inherited one), ``PYTHONUNBUFFERED=1`` so its lines arrive as they are printed, then
    ``extra`` (which wins over both)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [*(str(p) for p in paths), env.get("PYTHONPATH")])
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _matcher(match: LineMatch) -> Callable[[str], bool]:
    if isinstance(match, str):
        return lambda line: line.startswith(match)
    return match


class NotReady(ChildProcessError):
    """A child exited, or did not print the line waited for in time.

    Attributes:
        pid: the child's process id.
        returncode: its exit code (negative: the signal that ended it), None if it still runs.
        output: its last output lines, newline-separated.
    """

    def __init__(self, pid: int, returncode: int | None, output: str) -> None:
        what = "timed out" if returncode is None else f"exited with code {returncode}"
        super().__init__(f"process {pid} {what} before the awaited line")
        self.pid = pid
        self.returncode = returncode
        self.output = output


class WorkerStartError(ChildProcessError):
    """A ``jetloom worker`` process exited before it was ready (``services.launcher``; defined
    here so that the CLI names it without importing the launcher). The message ends with the
    worker's own one-line reason (its ``jetloom worker: ...`` line, else its last line).

    Attributes:
        pid: the worker's process id.
        output: its last output lines.
        returncode: its exit code (2: its workflow did not import or NATS did not answer;
            negative: the signal that ended it; None: unknown).
        hint: the worker's ``  hint: ...`` line without its prefix, else None.
    """

    def __init__(self, pid: int, output: str, returncode: int | None = None) -> None:
        lines = [line for line in output.splitlines() if line.strip()]
        own = [line for line in lines if line.startswith("jetloom worker:")]
        reason = (own or lines or ["no output"])[-1].removeprefix("jetloom worker: ")
        hints = [line.strip().removeprefix("hint: ") for line in lines if line.startswith("  hint: ")]
        super().__init__(f"worker {pid} exited before it was ready: {reason}")
        self.pid = pid
        self.output = output
        self.returncode = returncode
        self.hint = hints[-1] if hints else None


class _Waiter:
    """One caller waiting for a line: a threading event for blocking callers, or a future of an
    event loop (resolved in that loop's thread)."""

    def __init__(self, match: Callable[[str], bool], loop: asyncio.AbstractEventLoop | None) -> None:
        self.match = match
        self.line: str | None = None
        self.event = threading.Event()
        self.loop = loop
        self.future: asyncio.Future[str | None] | None = loop.create_future() if loop else None

    def resolve(self, line: str | None) -> None:
        self.line = line
        self.event.set()
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits there
                self.loop.call_soon_threadsafe(self._set_future, line)

    def _set_future(self, line: str | None) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(line)


class ChildProcess:
    """A command run as a child process, its output read line by line by a reader thread.

    Args:
        argv: the command and its arguments.
        env: its whole environment (default: this process'; see :func:`python_env`).
        cwd: its working directory (default: this process').
        ready: the line that says it is ready: a prefix, or a predicate (``wait_ready``);
            None: ready once started.
        tail: output lines kept in ``lines`` (default 60; None keeps every line).
        on_line: called with every output line, in the reader thread, as it arrives.
        output_file: a file every output line is appended to, besides ``lines``.

    Attributes:
        argv: the command.
        ready_line: the ready line once it was printed (the latest start's), else None.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        ready: LineMatch | None = None,
        tail: int | None = 60,
        on_line: Callable[[str], None] | None = None,
        output_file: str | Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = str(cwd) if cwd is not None else None
        self.ready = ready
        self.on_line = on_line
        self.output_file = Path(output_file) if output_file is not None else None
        self._lines: deque[str] = deque(maxlen=tail)
        self.ready_line: str | None = None
        self._since_start = 0  # lines read since the latest start (older ones match no waiter)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._waiters: list[_Waiter] = []
        self._exited = threading.Event()

    # ---- starting ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the command (stdin from /dev/null, stderr merged into stdout).

        Raises:
            RuntimeError: it is running already.
            OSError: the command could not be executed, or ``output_file`` not opened.
        """
        if self._proc is not None and not self._exited.is_set():
            raise RuntimeError(f"process {self._proc.pid} is running already")
        sink = self.output_file.open("a", encoding="utf-8") if self.output_file is not None else None
        try:
            proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except BaseException:
            if sink is not None:
                sink.close()
            raise
        self.ready_line = None
        self._since_start = 0
        self._exited.clear()
        self._proc = proc
        self._reader = threading.Thread(
            target=self._read, args=(proc, sink), name=f"jetloom:child-{proc.pid}", daemon=True
        )
        self._reader.start()
        return self

    def restart(self, timeout: float = STOP_TIMEOUT) -> Self:  # noqa: ASYNC109
        """Stop the process (``stop``) and start the command again. ``lines`` keeps the earlier
        output; only lines of the new start match ``wait_line`` and ``wait_ready``."""
        self.stop(timeout)
        return self.start()

    async def arestart(self, timeout: float = STOP_TIMEOUT) -> Self:  # noqa: ASYNC109
        """``restart`` for asyncio callers (waits without blocking the loop)."""
        await self.astop(timeout)
        return self.start()

    # ---- state ------------------------------------------------------------------------------

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The ``subprocess.Popen`` of the latest start.

        Raises:
            RuntimeError: never started.
        """
        return self._started()

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("the process was not started")
        return self._proc

    @property
    def pid(self) -> int:
        """The process id (of the latest start)."""
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it exited (negative: the signal that ended it), else None."""
        return self.proc.poll()

    @property
    def alive(self) -> bool:
        """Whether it was started and has not exited (a SIGSTOPped process is alive)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def lines(self) -> list[str]:
        """The last ``tail`` output lines (a copy), without their line ends."""
        with self._lock:
            return list(self._lines)

    def output(self) -> str:
        """The kept output lines (``lines``), newline-separated."""
        return "\n".join(self.lines)

    # ---- output -----------------------------------------------------------------------------

    def _read(self, proc: subprocess.Popen[bytes], sink: IO[str] | None) -> None:
        assert proc.stdout is not None
        ready = _matcher(self.ready) if self.ready is not None else None
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                # a failing callback or file must not stop the reading: the child would block
                # on a full pipe and never be reaped
                try:
                    if sink is not None:
                        sink.write(line + "\n")
                        sink.flush()
                    if self.on_line is not None:
                        self.on_line(line)
                except Exception:
                    logger.exception("process %d: passing on an output line failed", proc.pid)
                with self._lock:
                    self._lines.append(line)
                    self._since_start += 1
                    if ready is not None and self.ready_line is None and ready(line):
                        self.ready_line = line
                    matched = [w for w in self._waiters if w.match(line)]
                    for w in matched:
                        self._waiters.remove(w)
                for w in matched:
                    w.resolve(line)
        finally:
            proc.stdout.close()
            if sink is not None:
                sink.close()
            # its output is drained; the exit follows (or has come) and is reaped here, so
            # "exited" always means "exited and every line read"
            proc.wait()
            with self._lock:
                self._exited.set()
                waiting, self._waiters = self._waiters, []
            for w in waiting:
                w.resolve(None)

    def _waiter(self, match: LineMatch, loop: asyncio.AbstractEventLoop | None) -> _Waiter:
        """A waiter for ``match``, already resolved when a kept line matches or the process
        has exited."""
        w = _Waiter(_matcher(match), loop)
        with self._lock:
            if self._proc is None:
                raise RuntimeError("the process was not started")
            kept = list(self._lines)[len(self._lines) - min(self._since_start, len(self._lines)) :]
            seen = next((line for line in kept if w.match(line)), None)
            if seen is None and not self._exited.is_set():
                self._waiters.append(w)
                return w
        w.resolve(seen)
        return w

    def _forget(self, w: _Waiter) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._waiters.remove(w)

    def _failed(self) -> NotReady:
        return NotReady(self.pid, self.returncode, self.output())

    def wait_line(self, match: LineMatch, timeout: float = READY_TIMEOUT) -> str:  # noqa: ASYNC109
        """Block until an output line matches ``match`` (a kept line counts) and return it.

        Raises:
            NotReady: the process exited first, or ``timeout`` seconds passed.
        """
        w = self._waiter(match, None)
        if not w.event.wait(timeout):
            self._forget(w)
            raise self._failed()
        if w.line is None:
            raise self._failed()
        return w.line

    async def await_line(self, match: LineMatch, timeout: float | None = READY_TIMEOUT) -> str:  # noqa: ASYNC109
        """``wait_line`` for asyncio callers; ``timeout`` None waits as long as the process runs.

        Raises:
            NotReady: the process exited first.
            TimeoutError: ``timeout`` seconds passed.
        """
        w = self._waiter(match, asyncio.get_running_loop())
        assert w.future is not None
        try:
            async with asyncio.timeout(timeout):
                line = await w.future
        finally:
            self._forget(w)
        if line is None:
            raise self._failed()
        return line

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:  # noqa: ASYNC109
        """Block until the ``ready`` line (``wait_line``); returns it ("" with no ``ready``).

        Raises:
            NotReady: the process exited first, or ``timeout`` seconds passed.
        """
        if self.ready is None:
            self._started()
            return ""
        if self.ready_line is not None:
            return self.ready_line
        return self.wait_line(self.ready, timeout)

    async def await_ready(self, timeout: float | None = READY_TIMEOUT) -> str:  # noqa: ASYNC109
        """``wait_ready`` for asyncio callers.

        Raises:
            NotReady: the process exited first.
            TimeoutError: ``timeout`` seconds passed.
        """
        if self.ready is None:
            self._started()
            return ""
        if self.ready_line is not None:
            return self.ready_line
        return await self.await_line(self.ready, timeout)

    # ---- exit -------------------------------------------------------------------------------

    def wait_exit(self, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """Block until the process has exited and its output is read; its exit code.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        self._started()
        if not self._exited.wait(timeout):
            raise TimeoutError(f"process {self.pid} still runs after {timeout} s")
        return self._started().returncode

    async def await_exit(self, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """``wait_exit`` for asyncio callers (the exit is signalled to this loop; no thread is
        held while waiting).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        # a waiter for a line that never comes is resolved by the exit
        w = self._waiter(lambda _line: False, asyncio.get_running_loop())
        assert w.future is not None
        try:
            async with asyncio.timeout(timeout):
                await w.future
        finally:
            self._forget(w)
        return self._started().returncode

    def signal(self, sig: int) -> None:
        """Send ``sig`` (e.g. ``SIGSTOP``, ``SIGCONT``, ``SIGINT``) unless it has exited."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, without waiting for the exit: no cleanup in the child."""
        self.signal(signals.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM, without waiting for the exit."""
        self.signal(signals.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:  # noqa: ASYNC109
        """SIGTERM, up to ``timeout`` seconds for a graceful exit, then SIGKILL; returns the
        exit code (negative: the signal that ended it) once its output is read."""
        self._started()
        if not self._exited.is_set():
            self.terminate()
            if not self._exited.wait(timeout):
                self.kill()
                self._exited.wait(KILL_TIMEOUT)
        return self._code()

    async def astop(self, timeout: float = STOP_TIMEOUT) -> int:  # noqa: ASYNC109
        """``stop`` for asyncio callers."""
        self._started()
        if not self._exited.is_set():
            self.terminate()
            try:
                await self.await_exit(timeout)
            except TimeoutError:
                self.kill()
                with contextlib.suppress(TimeoutError):
                    await self.await_exit(KILL_TIMEOUT)
        return self._code()

    def _code(self) -> int:
        code = self._started().poll()
        return code if code is not None else -1

    def __repr__(self) -> str:
        state = "not started" if self._proc is None else f"pid={self._proc.pid} rc={self._proc.poll()}"
        return f"ChildProcess({' '.join(self.argv)!r}, {state})"


