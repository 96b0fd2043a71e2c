"""The continuous pull loop of a step consumer (``PullLoop``) and its deliveries
(``PullDelivery``, the ``Delivery`` of ``JetStreamLog.consume``).

Deliveries come from pull requests refilled as deliveries settle (not from ``fetch(batch=1)``,
which costs a round trip per delivery), with idle heartbeats and a watchdog that asks again when
the server goes quiet. On a connection with a fast path (``_natspy.Tap``) the deliveries come
straight from the protocol parser and the acknowledgements ride with the next publish
(``pub.Outbox.later``).

With run affinity (a ``RunRouter``), a first delivery whose run another live process owns is
handed over to it unsettled (``handoff``, ``consumers.StepConsumers``), and the owner's loop takes
it in with ``take_handoff``: held, kept alive and settled there as one of its own deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import orjson

from engine.jetstream._natspy import Tap
from engine.jetstream.pub import Outbox
from engine.jetstream.read import subscribe_tapped
from engine.jetstream.wire import (
    AckSubject,
    is_status,
    parse_ack_subject,
    parse_block,
    parse_status,
)
from engine.model.records import RawRecord
from engine.ports.log import RunRouter
from engine.wire.headers import H_FAN_OUT
from engine.wire.subjects import parse_subject

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

__all__ = [
    "HANDOFF_HOLD",
    "PULL_BACKOFF_MAX_S",
    "PULL_BACKOFF_S",
    "PULL_HEARTBEAT_S",
    "Handoff",
    "PullDelivery",
    "PullLoop",
]

logger = logging.getLogger("jetloom.log")

# Idle heartbeat of a pull request: two missed ones and the pull loop asks again (a pull request
# waiting on a consumer leader that was lost is gone with it; the new leader needs a new one).
PULL_HEARTBEAT_S = 2.0
PULL_BACKOFF_S = 0.05  # first wait before pulling again after a 503 (no consumer leader)
PULL_BACKOFF_MAX_S = 2.0
_NS = 1_000_000_000

#: Deliveries a pull loop holds, in multiples of its pull window, beyond which it hands back what
#: other processes hand over to it (``PullLoop.take_handoff``). Bursts of runs of one owner stay
#: below it; a backlog that relaying processes would pile onto an owner does not.
HANDOFF_HOLD = 16

#: Hands a delivery over to another process: ``(owner instance, subject, ack subject, headers
#: (parsed, or the raw header block of the fast path), payload)``.
Handoff = Callable[[str, str, str, dict[str, str] | bytes, bytes], None]
_FAN_OUT_LINE = f"\r\n{H_FAN_OUT}:".encode()


class PullDelivery:
    """A pull-consumer delivery; settling it frees a slot for the next pull."""

    __slots__ = ("record", "attempt", "_reply", "_pull", "_settled", "yielded")

    def __init__(self, record: RawRecord, attempt: int, reply: str, pull: PullLoop) -> None:
        self.record = record
        self.attempt = attempt
        self._reply = reply
        self._pull = pull
        self._settled = False
        self.yielded = False

    async def _settle(self, payload: bytes) -> None:
        if self._settled:
            return
        self._settled = True
        self._pull.release(self)
        if not self._pull.later(self._reply, payload):
            await self._pull.publish(self._reply, payload)

    async def ack(self) -> None:
        await self._settle(b"+ACK")

    async def term(self) -> None:
        await self._settle(b"+TERM")

    async def nak(self, delay: timedelta | None = None) -> None:
        if delay is None:
            await self._settle(b"-NAK")
        else:
            body = orjson.dumps({"delay": int(delay.total_seconds() * _NS)})
            await self._settle(b"-NAK " + body)

    async def in_progress(self) -> None:
        if not self._settled:
            await self._pull.publish(self._reply, b"+WPI")


class PullLoop:
    """The continuous pull loop of one consumer in one process.

    Keeps up to ``max_in_flight + prefetch`` deliveries asked for or held; hands out at most
    ``max_in_flight`` at a time; keeps every held delivery (running or buffered) alive with
    in-progress acks every ``progress`` seconds; re-pulls when the server has been silent for two
    heartbeats (a restart or a reconnect drops pending pull requests).

    With ``router`` and ``handoff``: a first delivery (attempt 1) that is not part of a fan-out
    (``Jl-Fan-Out``) and whose run ``router`` says another process owns goes to ``handoff``
    instead, not held and not settled here; a redelivery is always
    handled here. ``take_handoff`` takes in what other processes hand to this one.
    """

    def __init__(
        self,
        nc: NATS,
        api_subject: str,
        *,
        max_in_flight: int,
        prefetch: int,
        expires: float,
        heartbeat: float,
        ack_wait: float,
        progress: float | None = None,
        tap: Tap | None = None,
        outbox: Outbox | None = None,
        dispatch: Callable[[PullDelivery], None] | None = None,
        router: RunRouter | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        self.nc = nc
        self.router = router if handoff is not None else None
        self.handoff = handoff
        self.sending: set[asyncio.Future[None]] = set()  # naks of hand-offs sent by a task
        self.tap = tap
        self.dispatch = dispatch
        self.publish = outbox.publish if outbox is not None else nc.publish
        self.later = outbox.later if outbox is not None else (lambda subject, payload: False)
        self.api_subject = api_subject
        self.limit = max_in_flight + prefetch
        self.max_in_flight = max_in_flight
        self.expires_ns = int(expires * _NS)
        self.heartbeat = heartbeat
        self.ack_wait = ack_wait
        self.progress = progress if progress is not None else ack_wait / 3
        self.ready: deque[PullDelivery] = deque()
        self.held: set[PullDelivery] = set()  # received and not settled (buffered or running)
        self.running = 0
        self.outstanding = 0  # messages asked for and not yet received
        self.last_heard = time.monotonic()
        self.wake = asyncio.Event()
        self.hold_until = 0.0  # no pull request before this (monotonic s): backing off after a 503
        self.backoff = PULL_BACKOFF_S

    def release(self, d: PullDelivery) -> None:
        if d in self.held:
            self.held.discard(d)
            if d.yielded:
                self.running -= 1
            self.wake.set()

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers
        if headers and not msg.data and "Status" in headers:
            self._status(headers["Status"], headers)
            return
        self._take(msg.subject, msg.reply, dict(headers or {}), msg.data)

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        """A message of the pull inbox as the protocol parser has it (``_natspy.Tap``)."""
        if is_status(headers):
            self._status(*parse_status(headers))  # type: ignore[arg-type]  # a status line always carries a code
            return
        self._take(subject.decode(), reply.decode(), headers, data)

    def _status(self, status: str, headers: dict[str, str]) -> None:
        self.last_heard = time.monotonic()
        self._on_status(status, headers)
        self.wake.set()

    def _take(self, subject: str, reply: str, headers: dict[str, str] | bytes | None, data: bytes) -> None:
        """A delivery: ``headers`` parsed (nats-py's path), or the raw header block (the fast
        path's; parsed only when the delivery is held here, and relayed as it is when not)."""
        self.last_heard = time.monotonic()
        self.backoff = PULL_BACKOFF_S
        self.outstanding = max(0, self.outstanding - 1)
        ack = _ack(reply)
        if ack is None:
            return
        router = self.router
        if router is not None and ack.delivered == 1 and not _fanned_out(headers):
            parts = parse_subject(subject)
            owner = router.route(parts.run_id if parts is not None else subject, subject)
            if owner is not None and self.handoff is not None:
                self.handoff(owner, subject, reply, headers if headers is not None else {}, data)
                self.wake.set()  # (it left the pull window: ask for more)
                return
        self._hold(self._delivery(ack, subject, reply, headers, data))

    def take_handoff(self, subject: str, reply: str, headers: dict[str, str], data: bytes) -> None:
        """Take in a delivery another process handed over (``reply``: its JetStream ack
        subject): held, kept alive and settled here as one of this loop's own. When this loop
        already holds ``HANDOFF_HOLD`` times its pull window (a backlog: the processes that
        relay are not held back by what they relay), it is naked at once instead, and its
        redelivery is handled wherever it lands."""
        ack = _ack(reply)
        if ack is None:
            return
        if len(self.held) >= HANDOFF_HOLD * self.limit:
            if not self.later(reply, b"-NAK"):
                task = asyncio.ensure_future(self.publish(reply, b"-NAK"))
                self.sending.add(task)
                task.add_done_callback(self.sending.discard)
            return
        self._hold(self._delivery(ack, subject, reply, headers, data))

    def _hold(self, delivery: PullDelivery) -> None:
        self.held.add(delivery)
        if self.dispatch is not None and not self.ready and self.running < self.max_in_flight:
            # handed on from the read loop: its handler starts in the next turn of the event
            # loop, not after the pull loop's
            try:
                self.dispatch(delivery)  # (it starts a task: nothing runs before the lines below)
            except Exception:  # not into the connection's read loop: the pull loop hands it on
                logger.exception("pull consumer %s: dispatch failed", self.api_subject)
            else:
                delivery.yielded = True
                self.running += 1
                return  # (a delivery that arrives leaves the pull window as it was: no refill)
        self.ready.append(delivery)
        self.wake.set()

    async def _pull_more(self) -> None:
        if self.hold_until and time.monotonic() < self.hold_until:
            return
        want = self.limit - len(self.held) - self.outstanding
        if want <= 0 or (self.outstanding and want < max(1, self.limit // 2)):
            return
        body = orjson.dumps(
            {"batch": want, "expires": self.expires_ns, "idle_heartbeat": int(self.heartbeat * _NS)}
        )
        self.outstanding += want
        await self.publish(self.api_subject, body, self.inbox)

    async def _keep_alive(self) -> None:
        # Buffered and running deliveries must not hit ack_wait while they wait or work; and when
        # the server has been silent for two heartbeats (a restart or a reconnect drops pending
        # pull requests), ask again. One timer for both, not one per wait of the pull loop.
        last_wip = time.monotonic()
        while True:
            await asyncio.sleep(min(self.heartbeat, self.progress))
            now = time.monotonic()
            if now - self.last_heard > 2 * self.heartbeat:
                self.outstanding = 0  # our pull requests are gone; ask again
                self.last_heard = now
                self.wake.set()
            if now - last_wip >= 0.9 * self.progress:  # (a timer may fire a hair early)
                last_wip = now
                for d in list(self.held):
                    await d.in_progress()

    async def run(self) -> AsyncIterator[PullDelivery]:
        self.inbox = self.nc.new_inbox()
        # (deliveries straight from the parser when tapped: no Msg, queue or task each)
        sub = await subscribe_tapped(self.nc, self.inbox, self.tap, self._on_raw, self._on_msg)
        keep_alive = asyncio.create_task(self._keep_alive())
        try:
            while True:
                await self._pull_more()
                if self.ready and self.running < self.max_in_flight:
                    d = self.ready.popleft()
                    if d in self.held:
                        d.yielded = True
                        self.running += 1
                        if self.dispatch is not None:
                            self.dispatch(d)
                        else:
                            yield d
                    continue
                self.wake.clear()
                await self.wake.wait()
        finally:
            keep_alive.cancel()
            if self.tap is not None:
                self.tap.remove(sub)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
                # Hand buffered deliveries back at once instead of letting them wait out ack_wait.
                for d in list(self.ready):
                    await d.nak()

    def _on_status(self, status: str, headers: dict[str, str]) -> None:
        if status == "100":
            self.backoff = PULL_BACKOFF_S
            return  # idle heartbeat
        if status == "503":
            # No responders: the consumer has no leader (an election after a node was lost).
            # Ask again after a backoff (doubling to PULL_BACKOFF_MAX_S), not at once in a loop.
            self.outstanding = 0
            delay = self.backoff
            self.backoff = min(2 * self.backoff, PULL_BACKOFF_MAX_S)
            self.hold_until = time.monotonic() + delay
            asyncio.get_running_loop().call_later(delay, self.wake.set)
            if delay >= PULL_BACKOFF_MAX_S:
                logger.warning("pull consumer %s: no responders (no consumer leader); asking again", self.api_subject)
            return
        pending = headers.get("Nats-Pending-Messages")
        if pending is not None:
            self.outstanding = max(0, self.outstanding - int(pending))
        elif status in ("404", "408", "409"):
            self.outstanding = 0
        if status == "409":
            logger.warning("pull consumer %s: 409 %s", self.api_subject, headers.get("Description", ""))

    def _delivery(
        self, ack: AckSubject, subject: str, reply: str, headers: dict[str, str] | bytes | None, data: bytes
    ) -> PullDelivery:
        """The delivery of this loop for a message with ack subject ``reply`` (parsed: ``ack``);
        a raw header block is parsed here."""
        if not isinstance(headers, dict):
            headers = parse_block(headers)
        return PullDelivery(RawRecord(ack.stream_seq, subject, headers, data, ack.time_ns), ack.delivered, reply, self)


def _ack(reply: str) -> AckSubject | None:
    """The parsed ack subject of a delivery, or ``None`` (logged) when ``reply`` is not one."""
    ack = parse_ack_subject(reply)
    if ack is None:
        logger.warning("unexpected ack subject %r", reply)
    return ack


def _fanned_out(headers: dict[str, str] | bytes | None) -> bool:
    """Whether a delivery is a part of a fan-out (``Jl-Fan-Out``), from its headers or its raw
    header block."""
    if headers is None:
        return False
    if isinstance(headers, bytes):
        return _FAN_OUT_LINE in headers
    return H_FAN_OUT in headers
