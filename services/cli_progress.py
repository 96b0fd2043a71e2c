"""Live progress of one run for ``jetloom run --follow``: the run's records, as its SSE stream
(``GET /runs/{id}/stream``) delivers them, folded into what each step is doing.

:class:`RunProgress` is the fold: per step, the triggers done, running, waiting (a
``wait_for_event``, a sleep or a child run) and retrying, and how many failed; and the events the
run's steps wrote to its stream, summarised (type and a short payload). A terminal gets a rich
``Live`` table redrawn as records arrive; anything else (a pipe, a file, a test) gets one plain
line per change, without escape codes. Which steps an event starts comes from the workflow's
description (``GET /workflows/{name}``: each step's ``accepts``); without it a step shows up once a
record names it.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["ProgressDisplay", "RunProgress", "StepProgress", "follow_progress", "summarise"]

#: Characters of an event's payload shown in a summary line.
PAYLOAD_CHARS = 80
#: Streamed events kept under the table (a terminal).
RECENT_EVENTS = 6


def summarise(data: Any, limit: int = PAYLOAD_CHARS) -> str:
    """``data`` as compact JSON without its ``$type`` tag, cut to ``limit`` characters ("..."
    ends a cut one)."""
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "$type"}
    text = json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class StepProgress:
    """One step of the run: the stream sequences of the triggers in each state.

    Attributes:
        name: the step's name.
        done: triggers completed (a count).
        failed: triggers that failed for good (a count).
        running: triggers started (their event was committed) and not yet ended.
        waiting: trigger -> what it waits for (``Reply``, ``sleep``, ``child run``).
        retrying: trigger -> the attempt that comes next.
    """

    name: str
    done: int = 0
    failed: int = 0
    running: set[int] = field(default_factory=set)
    waiting: dict[int, str] = field(default_factory=dict)
    retrying: dict[int, int] = field(default_factory=dict)

    def end(self, trigger: int | None) -> None:
        if trigger is not None:
            self.running.discard(trigger)
            self.waiting.pop(trigger, None)
            self.retrying.pop(trigger, None)


class RunProgress:
    """The fold of a run's records (dicts as ``GET /runs/{id}/stream`` sends them) into per-step
    progress and a list of streamed events.

    Args:
        run_id / workflow: the run.
        accepts: step name -> the event type names it accepts (from ``GET /workflows/{name}``);
            None: unknown (a step is shown once a record names it).

    Attributes:
        steps: per step, in the order first seen (the description's order when given).
        events: the last streamed events, ``(type, payload summary)``.
        records: records folded so far.
        ended: the type of the record that ended the run (``RunCompleted``...), else None.
    """

    def __init__(self, run_id: str, workflow: str, accepts: Mapping[str, Iterable[str]] | None = None) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.accepts = {name: set(types) for name, types in (accepts or {}).items()}
        self.steps: dict[str, StepProgress] = {name: StepProgress(name) for name in self.accepts}
        self.events: deque[tuple[str, str]] = deque(maxlen=RECENT_EVENTS)
        self.records = 0
        self.ended: str | None = None
        self.started = time.monotonic()

    def _step(self, name: str) -> StepProgress:
        found = self.steps.get(name)
        if found is None:
            found = self.steps[name] = StepProgress(name)
        return found

    def apply(self, record: Mapping[str, Any]) -> list[str]:
        """Fold one record; the plain lines saying what changed (none for bookkeeping records
        such as timers)."""
        self.records += 1
        kind, type_ = record.get("kind"), record.get("type", "")
        data = record.get("data") or {}
        step, trigger = record.get("step"), record.get("trigger")
        lines: list[str] = []
        if kind == "sys":
            lines += self._system(type_, data, step, trigger)
        elif kind == "evt":
            if record.get("completes_step") and step is not None:
                self._step(step).end(trigger)
                self._step(step).done += 1
                lines.append(f"step {step} done (trigger {trigger})")
            lines += self._triggered(type_, record["seq"], record.get("target"))
        elif kind == "out":
            payload = summarise(data)
            self.events.append((type_, payload))
            lines.append(f"event {type_} {payload}")
        elif kind == "cmd" and step is not None and trigger is not None:  # a resume: it runs again
            s = self._step(step)
            s.waiting.pop(trigger, None)
            s.retrying.pop(trigger, None)
            s.running.add(trigger)
            lines.append(f"step {step} resumed ({data.get('reason', 'resume')}, trigger {trigger})")
        return lines

    def _triggered(self, event: str, seq: int, target: str | None) -> list[str]:
        names = [target] if target else [n for n, types in self.accepts.items() if event in types]
        for name in names:
            self._step(name).running.add(seq)
        return [f"step {name} running (on {event}, trigger {seq})" for name in names]

    def _system(self, type_: str, data: Mapping[str, Any], step: str | None, trigger: int | None) -> list[str]:
        if type_ == "RunStarted":
            return [f"run {self.run_id} started ({self.workflow})"]
        if type_ in ("RunCompleted", "RunFailed", "RunCancelled"):
            self.ended = type_
            if type_ == "RunCompleted" and step is not None:  # the step that returned the StopEvent
                self._step(step).end(trigger)
                self._step(step).done += 1
                return [f"step {step} done (trigger {trigger})"]
            return []
        if step is None:
            return [type_] if type_ in ("RolledBack", "RunForked") else []
        s = self._step(step)
        if type_ == "StepCompleted":
            s.end(trigger)
            s.done += 1
            took = f", {data['duration_ms']:.1f} ms" if data.get("duration_ms") else ""
            return [f"step {step} done (trigger {trigger}{took})"]
        if type_ == "StepFailed":
            s.end(trigger)
            s.failed += 1
            return [f"step {step} failed (attempt {data.get('attempt', 1)}): {_error(data)}"]
        if type_ == "StepRetrying":
            s.running.discard(trigger or 0)
            s.retrying[trigger or 0] = int(data.get("attempt", 1)) + 1
            delay = f" in {data['delay_ms']:.0f} ms" if data.get("delay_ms") else ""
            return [
                f"step {step} retrying (attempt {data.get('attempt', 1)} failed: {_error(data)}; "
                f"attempt {s.retrying[trigger or 0]}{delay})"
            ]
        if type_ == "StepSuspended":
            what = _awaited(data)
            s.running.discard(trigger or 0)
            s.retrying.pop(trigger or 0, None)
            s.waiting[trigger or 0] = what
            return [f"step {step} waiting for {what} (trigger {trigger})"]
        return []

    # ---- display ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Triggers per state over every step: done, running, waiting, retrying, failed."""
        return {
            "done": sum(s.done for s in self.steps.values()),
            "running": sum(len(s.running) for s in self.steps.values()),
            "waiting": sum(len(s.waiting) for s in self.steps.values()),
            "retrying": sum(len(s.retrying) for s in self.steps.values()),
            "failed": sum(s.failed for s in self.steps.values()),
        }

    def render(self) -> RenderableType:
        """The live view: a header line, the steps table, the last streamed events."""
        c = self.counts()
        elapsed = time.monotonic() - self.started
        header = Text.assemble(
            ("run ", "dim"),
            (self.run_id, "bold"),
            f" ({self.workflow})  ",
            (f"{c['done']} done", "green"),
            "  ",
            (f"{c['running']} running", "cyan"),
            "  ",
            (f"{c['waiting']} waiting", "magenta"),
            "  ",
            (f"{c['retrying']} retrying", "yellow"),
            "  ",
            (f"{c['failed']} failed", "red"),
            (f"  {elapsed:.1f} s, {self.records} records", "dim"),
        )
        table = Table(expand=False, box=None, pad_edge=False)
        table.add_column("step", no_wrap=True)
        for name, style in (("done", "green"), ("running", "cyan"), ("retrying", "yellow"), ("failed", "red")):
            table.add_column(name, justify="right", style=style)
        table.add_column("waiting for", style="magenta", overflow="fold")
        for s in self.steps.values():
            retrying = ", ".join(f"#{a}" for a in s.retrying.values())
            table.add_row(
                s.name,
                str(s.done),
                str(len(s.running)),
                f"{len(s.retrying)} ({retrying})" if s.retrying else "0",
                str(s.failed),
                ", ".join(sorted(set(s.waiting.values()))),
            )
        parts: list[RenderableType] = [header, table]
        if self.events:
            events = Table(box=None, show_header=False, pad_edge=False)
            events.add_column(style="bold")
            events.add_column(overflow="ellipsis", no_wrap=True)
            for type_, payload in self.events:
                events.add_row(type_, payload)
            parts += [Text("streamed events", style="dim"), events]
        return Group(*parts)


def _error(data: Mapping[str, Any]) -> str:
    message = " ".join(str(data.get("message", "")).split())
    if len(message) > PAYLOAD_CHARS:
        message = message[: PAYLOAD_CHARS - 3] + "..."
    kind = str(data.get("error_type", "Error")).removeprefix("builtins.")
    return f"{kind}: {message}"


def _awaited(data: Mapping[str, Any]) -> str:
    """What a ``StepSuspended`` record's wait waits for, in a few words."""
    kind = data.get("kind")
    if kind == "event":
        return str(data.get("event_type") or "an event")
    if kind == "child":
        return f"child run {data.get('child_workflow') or ''}".rstrip()
    return str(kind or "resume")


class ProgressDisplay:
    """Shows a :class:`RunProgress` on ``console`` as records are folded into it (``show``): a
    rich ``Live`` view when ``live`` (default: when the console is a terminal), else one plain
    line per change, written and flushed as it happens. A context manager (the live view is
    drawn between enter and exit)."""

    def __init__(self, progress: RunProgress, console: Console, *, live: bool | None = None) -> None:
        self.progress = progress
        self.console = console
        self.live = console.is_terminal if live is None else live
        self._view: Live | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            self._view = Live(self.progress.render(), console=self.console, refresh_per_second=8)
            self._view.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._view is not None:
            self._view.__exit__(None, None, None)
            self._view = None

    def show(self, record: Mapping[str, Any]) -> None:
        """Fold ``record`` and show what changed."""
        lines = self.progress.apply(record)
        if self._view is not None:
            self._view.update(self.progress.render())
        elif not self.live:
            for line in lines:
                self.console.file.write(line + "\n")
            self.console.file.flush()


def follow_progress(
    records: Iterable[Mapping[str, Any]], progress: RunProgress, console: Console, *, live: bool | None = None
) -> None:
    """Fold ``records`` into ``progress``, showing it on ``console`` (:class:`ProgressDisplay`)."""
    with ProgressDisplay(progress, console, live=live) as display:
        for record in records:
            display.show(record)
