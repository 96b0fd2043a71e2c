"""Live updates of the runs list: which runs just started or changed, for ``/ui/runs/live``.

One ``RunFeed`` per control plane follows the ``sys`` records of every workflow of the catalog
(``EventLog.follow_type`` with the type ``*``, a subject wildcard: one follow consumer per
workflow, delivering from now on, so nothing stored is read; the log keeps it for the life of
the connection, and the feed's sink is removed when the last browser leaves) while at least one
browser listens, and
hands each listener the ``(workflow, run id, record type)`` of every such record. Workflows
that appear in the catalog later are followed within ``REFRESH_S``; a rebuilt NATS connection
(a new log) is followed again. A listener that falls behind by more than ``QUEUE_MAX`` records
loses the oldest ones (a list row then updates with the run's next record).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from engine.model.records import RawRecord
from engine.ports.log import EventLog
from engine.wire.subjects import parse_subject

from ..app import ControlPlane

__all__ = ["QUEUE_MAX", "REFRESH_S", "Change", "RunFeed", "feed_of"]

REFRESH_S = 2.0  # seconds between looks at the catalog for workflows to follow
QUEUE_MAX = 4096  # changes a listener may fall behind by

Change = tuple[str, str, str]
"""``(workflow, run id, sys record type)``."""


class RunFeed:
    """The ``sys`` records of every run of every workflow, for the listeners of the runs list.

    Args:
        plane: the control plane (its log and registry view, whichever they are now).
    """

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.listeners: set[asyncio.Queue[Change]] = set()
        self._log: EventLog | None = None
        self._stops: dict[str, Callable[[], None]] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[Change]]:
        """A queue of the changes from now on, while the context lasts."""
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=QUEUE_MAX)
        self.listeners.add(queue)
        try:
            await self._follow()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._refresh(), name="jetloom:ui-feed")
            yield queue
        finally:
            self.listeners.discard(queue)
            if not self.listeners:
                await self.close()

    async def close(self) -> None:
        """Stop following (the next listener starts again)."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._unfollow()

    def _unfollow(self) -> None:
        for stop in self._stops.values():
            with contextlib.suppress(Exception):
                stop()
        self._stops.clear()

    async def _follow(self) -> None:
        log, view = self.plane.log, self.plane.view
        if log is None or view is None:
            return
        if log is not self._log:  # a rebuilt connection: the old follows went with the old log
            self._unfollow()
            self._log = log
        for name in sorted(set(view.workflows) - set(self._stops)):
            self._stops[name] = await log.follow_type(name, "sys", "*", self._deliver)

    async def _refresh(self) -> None:
        while self.listeners:
            await asyncio.sleep(REFRESH_S)
            with contextlib.suppress(Exception):  # (NATS away: tried again at the next turn)
                await self._follow()

    def _deliver(self, raw: RawRecord) -> None:
        parts = parse_subject(raw.subject)
        if parts is None:
            return
        change = (parts.workflow, parts.run_id, parts.type)
        for queue in self.listeners:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(change)


def feed_of(state: Any, plane: ControlPlane) -> RunFeed:
    """The app's ``RunFeed`` (made on first use, kept in the app's ``state``)."""
    feed: RunFeed | None = state.get("ui_run_feed")
    if feed is None or feed.plane is not plane:
        feed = RunFeed(plane)
        state["ui_run_feed"] = feed
    return feed
