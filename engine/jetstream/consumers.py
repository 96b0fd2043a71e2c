"""The step consumers of the run stream: their names, their lease (``ack_wait`` and the progress
heartbeat), setting them up (``StepConsumers.ensure``) and consuming them (``StepConsumers.consume``,
a ``pull.PullLoop`` each), and run affinity's hand-offs between processes.

A hand-off (``engine.runtime.affinity``) is the delivery itself, relayed unsettled with a core
NATS publish to ``<prefix>.handoff.<owner instance>.<consumer>.<subject after the prefix>``, its
JetStream ack subject in the ``Jl-Handoff-Ack`` header (the server refuses a publish whose reply
subject is a ``$JS.ACK`` one). Each process that consumes with a router has one subscription,
``<prefix>.handoff.<instance>.>``, its hand-off inbox, and gives each message to the pull loop of
its consumer, which settles it at the ack subject; a message for a consumer this process does not
consume (any more) is naked there at once, and redelivered to whoever pulls it next.

A hand-off's reply subject is ``<prefix>.handoff.<relaying instance>.back.<ack subject>``: when
no process subscribes the owner's inbox any more (it died, and its registry entry has not expired
yet), the server answers the publish there with a no-responders status, and the relaying process
naks the delivery at once instead of leaving it to wait out ``ack_wait``; its redelivery is
handled wherever it lands.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from engine.jetstream._natspy import Tap
from engine.jetstream.pub import Outbox
from engine.jetstream.pull import PULL_HEARTBEAT_S, Handoff, PullDelivery, PullLoop
from engine.jetstream.read import subscribe_tapped, unsubscribe_tapped
from engine.jetstream.retry import retrying
from engine.jetstream.wire import is_status, parse_block, parse_status
from engine.ports.log import Delivery, RunRouter, event_consumers
from engine.wire.headers import H_HANDOFF_ACK

__all__ = [
    "DEFAULT_ACK_WAIT",
    "DEFAULT_PROGRESS_HEARTBEAT",
    "StepConsumers",
    "check_lease",
    "commands_consumer_name",
    "consumer_name",
    "handoff_subject",
]

logger = logging.getLogger("jetloom.log")

# A SIGKILLed worker's triggers are redelivered once ack_wait passes after its last in-progress
# ack, so these two bound crash recovery (benchmarks scenario (k) measures it), while a running
# step renews its lease 3 times per ack_wait and keeps it through two lost heartbeats.
DEFAULT_ACK_WAIT = timedelta(seconds=6)
DEFAULT_PROGRESS_HEARTBEAT = timedelta(seconds=2)


def check_lease(ack_wait_s: float, progress_heartbeat_s: float | None = None) -> float:
    """Check a step consumer's ``ack_wait`` and progress-heartbeat interval (seconds), and return
    the heartbeat: when none is given, ``DEFAULT_PROGRESS_HEARTBEAT`` or a third of ``ack_wait``
    when that is shorter.

    Raises:
        ValueError: either is not positive, or the heartbeat is not shorter than ``ack_wait``
            (a running step would lose its lease between two in-progress acks).
    """
    if progress_heartbeat_s is None:
        progress_heartbeat_s = min(DEFAULT_PROGRESS_HEARTBEAT.total_seconds(), ack_wait_s / 3)
    if ack_wait_s <= 0 or progress_heartbeat_s <= 0:
        raise ValueError(
            f"ack_wait and progress heartbeat must be > 0 s, got {ack_wait_s:g} and {progress_heartbeat_s:g}"
        )
    if progress_heartbeat_s >= ack_wait_s:
        raise ValueError(
            f"progress heartbeat ({progress_heartbeat_s:g}s) must be shorter than ack_wait ({ack_wait_s:g}s)"
        )
    return progress_heartbeat_s


def consumer_name(workflow: str, step: str, event_type: str | None = None) -> str:
    """The durable consumer name of a workflow's step's events: ``<workflow>--<step>`` for its
    first accepted event type (in sorted order; its only one for most steps), and
    ``<workflow>--<step>--evt--<event_type>`` for each other type it accepts."""
    return f"{workflow}--{step}" if event_type is None else f"{workflow}--{step}--evt--{event_type}"


def handoff_subject(prefix: str, instance: str, consumer: str, subject: str) -> str:
    """The subject a delivery on run subject ``subject`` of ``consumer`` is handed over on to
    process ``instance``: ``<prefix>.handoff.<instance>.<consumer>.<subject after the prefix>``."""
    return f"{prefix}.handoff.{instance}.{consumer}.{subject[len(prefix) + 1:]}"


def commands_consumer_name(workflow: str, step: str) -> str:
    """The durable consumer name of a workflow's step's commands (``cmd.<step>``)."""
    return f"{workflow}--{step}--cmd"


class StepConsumers:
    """The durable pull consumers of the steps of the workflows on one run stream.

    Args:
        nc: the connection.
        js: its JetStream context.
        stream: the run stream.
        prefix: the subject prefix.
        ack_wait: seconds a delivery may stay unsettled (applied to the consumers ``ensure``
            creates or updates).
        progress_heartbeat: seconds between in-progress acks of held deliveries.
        prefetch: deliveries buffered per consumer beyond ``max_in_flight`` (``None``: as many).
        retry_for: seconds a transient failure is retried (``retry.retrying``).
        tap: the connection's fast path, or ``None``.
        outbox: the log's ``pub.Outbox`` (acknowledgements ride with the next publish).
    """

    def __init__(
        self,
        nc: Any,
        js: JetStreamContext,
        *,
        stream: str,
        prefix: str,
        ack_wait: float,
        progress_heartbeat: float,
        prefetch: int | None,
        retry_for: float,
        tap: Tap | None,
        outbox: Outbox,
    ) -> None:
        self.nc = nc
        self.js = js
        self.stream = stream
        self.prefix = prefix
        self.ack_wait = ack_wait
        self.progress_heartbeat = progress_heartbeat
        self.prefetch = prefetch
        self.retry_for = retry_for
        self.tap = tap
        self.outbox = outbox
        self._ensured: dict[tuple[str, str], tuple[str, ...]] = {}  # consumers set up here
        self.loops: dict[str, PullLoop] = {}  # consumer name -> its pull loop, while it runs
        self._inbox: Any = None  # the hand-off inbox's subscription, once opened
        self._inbox_head = ""  # ``<prefix>.handoff.<instance>.``
        self.handed_over = 0  # deliveries handed to their run's owner
        self.taken_over = 0  # deliveries other processes handed to this one
        self.handoffs_refused = 0  # hand-offs naked: their consumer does not run here
        self.handoffs_returned = 0  # hand-offs the server found no owner for, naked by the relayer

    async def open_handoffs(self, instance: str) -> None:
        """Subscribe this process's hand-off inbox (``<prefix>.handoff.<instance>.>``), once: hand
        it to the pull loop of each message's consumer. Before the process names itself a member
        (``ServiceEntry.handoff_steps``), so that no hand-off to it finds no subscription."""
        if self._inbox is not None:
            return
        self._inbox_head = f"{self.prefix}.handoff.{instance}."
        self._inbox = await subscribe_tapped(
            self.nc, self._inbox_head + ">", self.tap, self._on_handoff_raw, self._on_handoff_msg
        )

    async def close_handoffs(self) -> None:
        """Unsubscribe the hand-off inbox (what arrives after is redelivered after ack_wait)."""
        sub, self._inbox = self._inbox, None
        if sub is not None:
            await unsubscribe_tapped(sub, self.tap)

    def _on_handoff_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if is_status(headers):
            self._returned(subject.decode(), parse_status(headers)[0])  # type: ignore[arg-type]  # a status line always carries a code
            return
        self._take_handoff(subject.decode(), parse_block(headers) if headers else {}, data)

    async def _on_handoff_msg(self, msg: Any) -> None:
        headers = msg.headers or {}
        if not msg.data and "Status" in headers:
            self._returned(msg.subject, headers["Status"])
            return
        self._take_handoff(msg.subject, dict(headers), msg.data)

    def _returned(self, subject: str, status: str) -> None:
        """A status on ``<inbox head>back.<ack subject>``: ``503`` (no responders) says a hand-off
        this process relayed reached no process; nak the delivery so that it is redelivered now."""
        kind, _, ack = subject[len(self._inbox_head):].partition(".")
        if kind != "back" or status != "503" or not ack:
            return
        self.handoffs_returned += 1
        self.outbox.relay(ack, b"-NAK", {})

    def _take_handoff(self, subject: str, headers: dict[str, str], data: bytes) -> None:
        ack = headers.pop(H_HANDOFF_ACK, None)
        consumer, _, rest = subject[len(self._inbox_head):].partition(".")
        if ack is None or not rest:
            logger.warning("hand-off on %s without an ack subject or a run subject; dropped", subject)
            return
        loop = self.loops.get(consumer)
        if loop is None:  # not consumed here (stopping, or another set of steps): back at once
            self.handoffs_refused += 1
            self.outbox.relay(ack, b"-NAK", {})
            return
        self.taken_over += 1
        loop.take_handoff(f"{self.prefix}.{rest}", ack, headers, data)

    def _handoff(self, consumer: str) -> Handoff:
        prefix, outbox = self.prefix, self.outbox

        def handoff(owner: str, subject: str, ack: str, headers: dict[str, str] | bytes, data: bytes) -> None:
            self.handed_over += 1
            target = handoff_subject(prefix, owner, consumer, subject)
            back = f"{self._inbox_head}back.{ack}"  # (a no-responders status comes back here)
            if isinstance(headers, bytes):
                outbox.relay_block(target, data, headers, H_HANDOFF_ACK, ack, back)
            else:
                outbox.relay(target, data, {**headers, H_HANDOFF_ACK: ack}, back)

        return handoff

    async def ensure(self, workflow: str, step: str, event_types: Sequence[str], *, update: bool = True) -> None:
        """``EventLog.ensure_consumer``; idempotent, so retried whole through a leader election."""
        await retrying(
            f"set-up of the consumers of step {workflow}.{step}",
            lambda: self._ensure_consumer(workflow, step, event_types, update),
            retry_for=self.retry_for,
        )

    async def _ensure_consumer(
        self, workflow: str, step: str, event_types: Sequence[str], update: bool
    ) -> None:
        # Durable consumers of one filter subject each: one per accepted event type (the first,
        # in sorted order, under the step's own name), and the step's commands (``cmd.<step>``)
        # apart. A consumer with several filters makes nats-server 2.15 intersect the stream's
        # per-subject index with them each time its position crosses into a new message block
        # (``checkSkipFirstBlockMulti``: every run of the workflow, up to 1,000,000 subjects; with
        # one filter, ``LoadNextMsg``'s check stops at 64,000). With many finished runs kept,
        # (b) of ``benchmarks --retained-runs`` shows the difference in the server's CPU per
        # transition and in the p99.
        sources = event_consumers(event_types)
        events = tuple(f"{self.prefix}.run.{workflow}.*.evt.{t}" for _, t in sources)
        known = self._ensured.get((workflow, step))
        if known is not None and (not update or known == events):
            # Set up by this log already: an in-process workflow restarting its executor for the
            # next run does not pay the consumer API round trips again.
            return
        # (the split consumers first: a step consumer made by an older jetloom also delivered the
        # step's commands and its other event types, and each new consumer starts after what that
        # one has acknowledged)
        name = consumer_name(workflow, step)
        old = await self._consumer_info(name)
        changes: list[tuple[str, float]] = []  # existing consumers whose ack_wait changes
        if update and old is not None:
            self._note_lease(old, changes)
        await self._ensure_split(
            commands_consumer_name(workflow, step),
            f"jetloom step commands {workflow}.{step}",
            f"{self.prefix}.run.{workflow}.*.cmd.{step}",
            old,
            update,
            changes,
        )
        for (source, t), subject in zip(sources[1:], events[1:], strict=True):
            await self._ensure_split(
                consumer_name(workflow, step, source),
                f"jetloom step {workflow}.{step} ({t})",
                subject,
                old,
                update,
                changes,
            )
        if update or old is None:
            await self._add_durable(name, f"jetloom step {workflow}.{step}", events[:1])
        if changes:
            logger.info(
                "step %s.%s: ack_wait of existing consumers changed to %gs (%s)",
                workflow,
                step,
                self.ack_wait,
                ", ".join(f"{n}: was {w:g}s" for n, w in changes),
            )
        self._ensured[(workflow, step)] = events

    def _note_lease(self, info: ConsumerInfo, changes: list[tuple[str, float]]) -> None:
        """Add to ``changes`` an existing consumer whose ``ack_wait`` the coming update changes."""
        was = info.config.ack_wait
        if was is not None and abs(was - self.ack_wait) > 1e-3:
            changes.append((info.name, was))

    async def _ensure_split(
        self,
        name: str,
        description: str,
        subject: str,
        old: ConsumerInfo | None,
        update: bool,
        changes: list[tuple[str, float]],
    ) -> None:
        """A step's consumer of ``subject`` apart from its main one; ``old``: the main consumer
        as it was, if any. Made from scratch it starts after what ``old`` acknowledged when
        ``old`` delivered ``subject`` too (a consumer of an older jetloom), else at the start."""
        info = await self._consumer_info(name)
        if info is not None and not update:
            return
        if info is not None:
            self._note_lease(info, changes)
        if info is not None:  # (its delivery start cannot change; the rest is brought up to date)
            policy, start = info.config.deliver_policy, info.config.opt_start_seq
        elif old is not None and subject in (old.config.filter_subjects or [old.config.filter_subject or ""]):
            floor = old.ack_floor.stream_seq if old.ack_floor else 0
            policy, start = DeliverPolicy.BY_START_SEQUENCE, floor + 1
        else:
            policy, start = DeliverPolicy.ALL, None
        await self._add_durable(name, description, [subject], policy, start)

    async def backlog(self, workflow: str, step: str, event_types: Sequence[str]) -> list[tuple[str, int, int]]:
        """``(consumer name, pending, ack pending)`` of each of a step's consumers that exists
        (its event consumers, then its commands consumer): messages the consumer has still to
        deliver, and messages delivered and not yet acknowledged, as the server's consumer info
        gives them (one request per consumer)."""
        names = [consumer_name(workflow, step, source) for source, _ in event_consumers(event_types)]
        names.append(commands_consumer_name(workflow, step))
        out = []
        for name in names:
            info = await self._consumer_info(name)
            if info is not None:
                out.append((name, info.num_pending or 0, info.num_ack_pending or 0))
        return out

    async def _consumer_info(self, name: str) -> ConsumerInfo | None:
        try:
            return await self.js.consumer_info(self.stream, name)
        except NotFoundError:
            return None

    async def _add_durable(
        self,
        name: str,
        description: str,
        filters: Sequence[str],
        policy: DeliverPolicy | None = DeliverPolicy.ALL,
        start_seq: int | None = None,
    ) -> None:
        """Create or update a step's durable pull consumer (explicit acks, no delivery limit)."""
        config = ConsumerConfig(
            durable_name=name,
            description=description,
            deliver_policy=policy,
            opt_start_seq=start_seq,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=20_000,
            max_waiting=512,
        )
        if len(filters) == 1:
            config.filter_subject = filters[0]
        else:
            config.filter_subjects = list(filters)
        await self.js.add_consumer(self.stream, config)

    async def consume(
        self,
        workflow: str,
        step: str,
        *,
        max_in_flight: int,
        commands: bool = False,
        event_type: str | None = None,
        dispatch: Callable[[Delivery], None] | None = None,
        router: RunRouter | None = None,
    ) -> AsyncIterator[PullDelivery]:
        name = commands_consumer_name(workflow, step) if commands else consumer_name(workflow, step, event_type)
        if router is not None:
            await self.open_handoffs(router.instance)
        pull = PullLoop(
            self.nc,
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{name}",
            max_in_flight=max_in_flight,
            prefetch=self.prefetch if self.prefetch is not None else max_in_flight,
            expires=30.0,
            heartbeat=PULL_HEARTBEAT_S,
            ack_wait=self.ack_wait,
            progress=self.progress_heartbeat,
            tap=self.tap,
            outbox=self.outbox,
            dispatch=dispatch,
            router=router,
            handoff=self._handoff(name) if router is not None else None,
        )
        if router is not None:
            self.loops[name] = pull
        try:
            async for delivery in pull.run():
                yield delivery
        finally:
            if self.loops.get(name) is pull:
                del self.loops[name]
