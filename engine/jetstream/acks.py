"""Publish acks of one connection: one inbox, a future per publish, one task for the deadlines.

Every message the log appends is published with a reply subject ``<inbox>.<n>`` of its own; the
server's ack (``{"stream":…, "seq":…}``, or an error) comes back on it. ``AckInbox`` hands each
ack to its future straight from the protocol parser when the connection has a fast path
(``_natspy.Tap``: no nats-py ``Msg``, queue or task per ack), else through an ordinary
subscription. A publish whose ack has not come ``timeout`` seconds after it was sent fails with
``LogError``; the deadlines are kept in send order and checked by one task, not by a timer per
commit (``asyncio.timeout`` around each commit's acks cost a worker a visible share of its CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from typing import TYPE_CHECKING

from engine.jetstream._natspy import Tap
from engine.jetstream.read import subscribe_tapped
from engine.model.errors import LogError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

__all__ = ["AckInbox"]

SWEEP_S = 0.25  # how often the deadlines of acks still awaited are checked


class AckInbox:
    """Futures for the acks of publishes on ``nc``.

    Args:
        nc: the connection.
        tap: its tap (``None``: acks take nats-py's subscription path).
        timeout: seconds after sending by which an ack must have come.
    """

    def __init__(self, nc: NATS, tap: Tap | None, timeout: float) -> None:
        self.nc = nc
        self.tap = tap
        self.timeout = timeout
        self._prefix = ""
        self._cut = 0
        self._ids = itertools.count()
        self._waiters: dict[int, asyncio.Future[bytes]] = {}
        self._deadlines: deque[tuple[float, int]] = deque()
        self._lock = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether the inbox is subscribed (``open`` has run)."""
        return bool(self._prefix)

    def new(self) -> tuple[str, asyncio.Future[bytes]]:
        """A new reply subject and the future its ack will resolve (to the ack's payload; ``b""``
        for a status without payload such as 503 no responders). The future fails with
        ``LogError`` when no ack came within ``timeout``. Call ``open`` first."""
        n = next(self._ids)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[n] = future
        self._deadlines.append((time.monotonic() + self.timeout, n))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="jetloom:ack-deadlines")
        return f"{self._prefix}{n}", future

    def drop(self, reply: str) -> None:
        """Forget the ack of ``reply`` (its publish failed)."""
        future = self._waiters.pop(int(reply[len(self._prefix) :]), None)
        if future is not None and not future.done():
            future.cancel()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def open(self) -> None:
        """Subscribe the inbox (once)."""
        async with self._lock:
            if self._prefix:
                return
            inbox = self.nc.new_inbox()
            await subscribe_tapped(self.nc, inbox + ".*", self.tap, self._on_raw, self._on_msg)
            self._prefix = inbox + "."
            self._cut = len(self._prefix)

    def _resolve(self, subject: bytes | str, data: bytes) -> None:
        try:
            n = int(subject[self._cut :])
        except ValueError:
            return
        future = self._waiters.pop(n, None)
        if future is not None and not future.done():
            future.set_result(data)

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        # Resolved two turns of the event loop later: a delivery read with the ack (the next step
        # of the run, which the server sends right after the ack of the commit that stored it)
        # then has its handler run and its commit written before the ack's waiter resumes.
        asyncio.get_running_loop().call_soon(self._turn, subject, data)

    def _turn(self, subject: bytes, data: bytes) -> None:
        asyncio.get_running_loop().call_soon(self._resolve, subject, data)

    async def _on_msg(self, msg: Msg) -> None:
        self._resolve(msg.subject, msg.data)

    async def _sweep(self) -> None:
        deadlines, waiters = self._deadlines, self._waiters
        while deadlines:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            while deadlines and (deadlines[0][0] <= now or deadlines[0][1] not in waiters):
                _, n = deadlines.popleft()
                future = waiters.pop(n, None)
                if future is not None and not future.done():
                    future.set_exception(LogError(f"no publish ack within {self.timeout}s"))
