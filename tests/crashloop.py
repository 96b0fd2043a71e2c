"""A workflow whose steps have an external side effect (a line appended to a file), made
exactly-once under at-least-once execution with ``ctx.idempotency_key``."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from engine import Context, Event, StartEvent, StopEvent, Workflow, step


class LineStart(StartEvent):
    path: str
    hold: float = 0.02  # seconds a step waits after its write, so kills land between write and commit
    gate: str = ""  # a path: while a file is there, steps wait before their write (the test pauses the runs)


class First(Event):
    path: str
    hold: float
    gate: str = ""


class Second(Event):
    path: str
    hold: float
    gate: str = ""


def gate_closed(gate: str) -> bool:
    """Whether the gate file ``gate`` exists (an empty ``gate`` is always open)."""
    return bool(gate) and os.path.exists(gate)


async def pass_gate(gate: str) -> None:
    """Wait while the file ``gate`` exists (polled every 10 ms); at once when ``gate`` is empty."""
    while gate_closed(gate):
        await asyncio.sleep(0.01)


def note_execution(path: str, key: str, line: str) -> None:
    """Append ``<key> <line>`` to ``<path>.executions`` (every execution of a step, written before
    it waits at the gate: the test checks that each execution of one step had the same key)."""
    with open(path + ".executions", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(f"{key} {line}\n")
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def append_once(path: str, key: str, line: str) -> bool:
    """Append ``<key> <line>`` to ``path`` unless a line with ``key`` is there already; the check
    and the write happen under an exclusive lock on the file. Returns whether it wrote."""
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            if any(existing.split(" ", 1)[0] == key for existing in f):
                return False
            f.write(f"{key} {line}\n")
            f.flush()
            return True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Lines(Workflow):
    """Three steps; each appends one line ``<idempotency key> <run id> <step>`` to ``path``."""

    @step
    async def one(self, ctx: Context, ev: LineStart) -> First:
        note_execution(ev.path, ctx.idempotency_key, f"{ctx.run_id} one")
        await pass_gate(ev.gate)
        append_once(ev.path, ctx.idempotency_key, f"{ctx.run_id} one")
        await asyncio.sleep(ev.hold)
        return First(path=ev.path, hold=ev.hold, gate=ev.gate)

    @step
    async def two(self, ctx: Context, ev: First) -> Second:
        note_execution(ev.path, ctx.idempotency_key, f"{ctx.run_id} two")
        await pass_gate(ev.gate)
        append_once(ev.path, ctx.idempotency_key, f"{ctx.run_id} two")
        await asyncio.sleep(ev.hold)
        return Second(path=ev.path, hold=ev.hold, gate=ev.gate)

    @step
    async def three(self, ctx: Context, ev: Second) -> StopEvent:
        note_execution(ev.path, ctx.idempotency_key, f"{ctx.run_id} three")
        await pass_gate(ev.gate)
        append_once(ev.path, ctx.idempotency_key, f"{ctx.run_id} three")
        await asyncio.sleep(ev.hold)
        return StopEvent(result=Path(ev.path).name)
