"""Following runs on JetStream: one ordered push consumer per workflow and process (one more per
kind followed alone, such as a handler's ``sys``), shared by every run that process follows.

A consumer per followed run costs the server more CPU to create and delete than everything else
a three-step run costs. A ``FollowHub``
instead keeps one ephemeral in-memory push consumer on ``<prefix>.run.<workflow>.>`` delivering
what is stored from its creation on, and hands each record to the followers of its run. A follower
registers before it reads the run's stored records, so every record is either in that read or
delivered by the hub afterwards (the follower drops what it has already seen by sequence).

The consumer is made again from the last stream sequence seen when a delivery is missed (a gap in
the consumer sequence) or when the server goes quiet for three heartbeats (a restart drops it).
The cost: the process receives every record of the workflow it follows (of the hub's kind), its
own runs' or not, while it follows any. A hub left without followers for ``IDLE_S`` (30 s) is
dropped and its consumer deleted, so a process that followed one run an hour ago (a control plane
that answered one ``?wait=true``) does not receive the workflow's records ever after; the next
follow makes a new hub (one consumer create, a round trip).

The consumer has one filter subject: ``<prefix>.run.<workflow>.>``, or
``<prefix>.run.<workflow>.*.<kind>.>`` for the followers of one kind (``JetStreamLog.follow``:
a handler that is only awaited follows ``sys``, and so receives two records of a three-step run
instead of five). Followers of several kinds register them (``register(run_id, kinds)``, e.g.
``sys`` and ``out`` for a handler that streams); the hub hands a follower only those, and parses no
headers of a record no follower wants. A consumer with several filters costs nats-server 2.15 a walk of
the stream's per-subject index under its filters whenever its position crosses into a new message
block (``checkSkipFirstBlockMulti``, up to 1,000,000 subjects; one filter stops at 64,000), which
(b) of ``benchmarks --retained-runs`` shows in the server's CPU per transition and the p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from typing import TYPE_CHECKING, Any

import orjson
from nats.aio.msg import Msg
from nats.js.errors import APIError

from engine.jetstream._natspy import Tap
from engine.jetstream.read import subscribe_tapped, unsubscribe_tapped
from engine.jetstream.reader import Reader
from engine.jetstream.retry import retrying
from engine.jetstream.wire import (
    AckSubject,
    is_status,
    parse_ack_subject,
    parse_block,
    parse_status,
)
from engine.model.records import RawRecord
from engine.ports.log import Followers, hand_over

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

__all__ = ["EVERY_RUN", "FollowHub", "Follows"]

logger = logging.getLogger("jetloom.log")

EVERY_RUN = "*"  # the followers' key of a sink that takes every run's records (no run id is "*")
HEARTBEAT_S = 2.0  # idle heartbeat of the hub's consumer
INACTIVE_S = 10.0  # the server removes the consumer this long after its process went away
IDLE_S = 30.0  # a hub without followers this long is dropped (``Follows``), its consumer deleted
_NS = 1_000_000_000


class FollowHub:
    """The shared follow consumer of one workflow.

    Args:
        nc: the connection.
        stream: the run stream.
        subject_filter: ``<prefix>.run.<workflow>.>``.
        timeout: seconds to wait for the consumer API.
        tap: the connection's fast path (``_natspy.Tap``): deliveries then reach the hub straight
            from the protocol parser (no nats-py ``Msg``, queue or task each), and the headers of
            records of runs nobody here follows are not parsed. ``None``: nats-py's subscription
            path.
        on_idle: called with the hub once it has had no follower for ``idle_s`` seconds (and
            none came meanwhile); default: never.
        idle_s: seconds (default ``IDLE_S``, 30).
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        subject_filter: str,
        timeout: float,
        tap: Tap | None = None,
        *,
        on_idle: Callable[[FollowHub], None] | None = None,
        idle_s: float = IDLE_S,
    ) -> None:
        self.nc = nc
        self.tap = tap
        self.stream = stream
        self.filter = subject_filter
        self.timeout = timeout
        # run id -> its followers' sinks (a queue's ``put_nowait``, or ``EventLog.follow_callback``'s sink)
        self.followers = Followers()
        self._name = ""
        self._delivered = 0
        self._last_seq = 0  # last stream sequence delivered (0: none yet, start from "new")
        self._ready: asyncio.Future[None] | None = None
        self._renew = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self.on_idle = on_idle
        self.idle_s = idle_s
        self._idle: asyncio.TimerHandle | None = None

    async def register(self, run_id: str, kinds: Collection[str] | None = None) -> asyncio.Queue[RawRecord]:
        """A queue receiving every record of ``run_id`` stored from now on (once the hub's consumer
        exists, which this waits for); with ``kinds``, only records of those kinds (``sys``,
        ``out``, ...). ``unregister(run_id, queue.put_nowait)`` ends it."""
        queue: asyncio.Queue[RawRecord] = asyncio.Queue()
        await self.add(run_id, queue.put_nowait, kinds)
        return queue

    async def add(
        self, run_id: str, sink: Callable[[RawRecord], None], kinds: Collection[str] | None = None
    ) -> None:
        """Call ``sink`` with every record of ``run_id`` stored from now on, from the delivery
        path (once the hub's consumer exists, which this waits for); with ``kinds``, only records
        of those kinds. An exception ``sink`` raises is logged."""
        self.followers.add(run_id, sink, kinds)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            # (first follow, or the consumer could not be made last time: try again now)
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(), name=f"jetloom:follow:{self.filter}")
        try:
            if not self._ready.done():
                await asyncio.shield(self._ready)
        except BaseException:
            self.unregister(run_id, sink)
            raise

    def unregister(self, run_id: str, sink: Callable[[RawRecord], None]) -> None:
        self.followers.remove(run_id, sink)
        if not self.followers and self.on_idle is not None and self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(self.idle_s, self._idle_out)

    def _idle_out(self) -> None:
        self._idle = None
        if not self.followers and self.on_idle is not None:
            self.on_idle(self)

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _create(self) -> None:
        self._name = f"jlf{uuid.uuid4().hex}"
        self._delivered = 0
        config: dict[str, Any] = {
            "name": self._name,
            "deliver_subject": self._sub.subject,
            "ack_policy": "none",
            "max_deliver": 1,
            "mem_storage": True,
            "num_replicas": 1,
            "inactive_threshold": int(INACTIVE_S * _NS),
            "idle_heartbeat": int(HEARTBEAT_S * _NS),
            "filter_subject": self.filter,
        }
        if self._last_seq:
            config.update(deliver_policy="by_start_sequence", opt_start_seq=self._last_seq + 1)
        else:
            config["deliver_policy"] = "new"
        body = orjson.dumps({"stream_name": self.stream, "config": config})
        reply = await self.nc.request(
            f"$JS.API.CONSUMER.CREATE.{self.stream}.{self._name}", body, timeout=self.timeout
        )
        answer = orjson.loads(reply.data)
        err = answer.get("error")
        if err is not None:
            APIError.from_error(err)  # raises nats-py's error of that code (retry.is_transient)
        if not self._last_seq:
            # "new" starts after the stream's last sequence; a renewal must start right there.
            self._last_seq = int(answer.get("delivered", {}).get("stream_seq") or 0)

    def _delete(self, name: str) -> None:
        if name and not self.nc.is_closed:
            task = asyncio.ensure_future(
                self.nc.publish(
                    f"$JS.API.CONSUMER.DELETE.{self.stream}.{name}", b"", reply=self.nc.new_inbox()
                )
            )
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _run(self) -> None:
        assert self._ready is not None
        self._sub = await subscribe_tapped(self.nc, self.nc.new_inbox(), self.tap, self._on_raw, self._on_msg)
        try:
            while True:
                try:
                    # (rides through a leader election; what outlasts it fails the follow)
                    await retrying("follow consumer on " + self.filter, self._create)
                except Exception as exc:  # the server is away; try again
                    if not self._ready.done():
                        self._ready.set_exception(exc)
                        return
                    logger.warning("follow consumer: %s; retrying", exc)
                    await asyncio.sleep(HEARTBEAT_S)
                    continue
                if not self._ready.done():
                    self._ready.set_result(None)
                while True:
                    # Renew when told to (a missed delivery), or when a window of three heartbeats
                    # passes without a message.
                    self._renew.clear()
                    self._silent = True
                    try:
                        async with asyncio.timeout(3 * HEARTBEAT_S):
                            await self._renew.wait()
                    except TimeoutError:
                        pass
                    if self._renew.is_set() or self._silent:
                        break
                old, self._name = self._name, ""
                self._delete(old)
        finally:
            self._delete(self._name)
            await unsubscribe_tapped(self._sub, self.tap)

    _silent = False

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers
        if headers and not msg.data and "Status" in headers:
            self._on_status(headers.get("Nats-Last-Consumer"))
            return
        ack = self._delivery(msg.reply)
        if ack is None:
            return
        takers = self._takers(msg.subject)
        if takers:
            hand_over(takers, RawRecord(ack.stream_seq, msg.subject, dict(headers or {}), msg.data, ack.time_ns))

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        """A delivery as the protocol parser has it (``_natspy.Tap``)."""
        if is_status(headers):  # a heartbeat
            self._on_status(parse_status(headers)[1].get("Nats-Last-Consumer"))  # type: ignore[arg-type]  # a heartbeat without the header passes None, which _on_status takes
            return
        ack = self._delivery(reply)
        if ack is None:
            return
        name = subject.decode()
        takers = self._takers(name)
        if takers:
            hand_over(takers, RawRecord(ack.stream_seq, name, parse_block(headers), data, ack.time_ns))

    def _takers(self, subject: str) -> list[Callable[[RawRecord], None]]:
        """The sinks of the followers of the record's run that want its kind."""
        _, run_id, kind, _ = subject.rsplit(".", 3)
        takers = self.followers.takers(run_id, kind)
        if EVERY_RUN in self.followers:
            takers += self.followers.takers(EVERY_RUN, kind)
        return takers

    def _on_status(self, last_consumer_seq: str | None) -> None:
        self._silent = False
        if last_consumer_seq is not None and int(last_consumer_seq) > self._delivered and self._name:
            self._renew.set()  # a delivery was missed

    def _delivery(self, reply: str | bytes) -> AckSubject | None:
        """The ack subject of a delivery to hand on; ``None`` for a delivery of a replaced
        consumer, a repeat, or after a gap (which renews the consumer)."""
        self._silent = False
        ack = parse_ack_subject(reply)
        if ack is None or ack.consumer != self._name:
            return None  # from a consumer we have replaced
        cseq, seq = ack.consumer_seq, ack.stream_seq
        if cseq != self._delivered + 1:
            self._renew.set()
            return None
        self._delivered = cseq
        if seq <= self._last_seq:
            return None
        self._last_seq = seq
        return ack


class Follows:
    """The follows of one log: its follow hubs (one per workflow and kind followed alone, one per
    record type of ``follow_type``) and its watches (core subscriptions).

    Args:
        nc: the connection.
        stream: the run stream.
        prefix: the subject prefix.
        timeout: seconds to wait for the consumer API.
        tap: the connection's fast path, or ``None``.
        reader: reads a run's stored records before its hub takes over.
        idle_s: seconds a hub stays without followers before it is dropped (default ``IDLE_S``).
    """

    def __init__(
        self,
        nc: Any,
        *,
        stream: str,
        prefix: str,
        timeout: float,
        tap: Tap | None,
        reader: Reader,
        idle_s: float = IDLE_S,
    ) -> None:
        self.nc = nc
        self.stream = stream
        self.prefix = prefix
        self.timeout = timeout
        self.tap = tap
        self.reader = reader
        self.hubs: dict[tuple[str, str | None], FollowHub] = {}  # (workflow, kind or every kind)
        self.typed: dict[tuple[str, str], FollowHub] = {}  # (workflow, kind.type): follow_type
        self.idle_s = idle_s
        self._closing: set[asyncio.Task[None]] = set()  # hubs dropped when idle, being closed

    async def close(self) -> None:
        """Stop every hub (their consumers are deleted)."""
        for hub in [*self.hubs.values(), *self.typed.values()]:
            await hub.close()
        self.hubs.clear()
        self.typed.clear()
        for task in list(self._closing):
            with contextlib.suppress(BaseException):
                await task

    def _new_hub(self, subjects: str) -> FollowHub:
        return FollowHub(
            self.nc, self.stream, subjects, self.timeout, self.tap, on_idle=self._drop, idle_s=self.idle_s
        )

    def _drop(self, hub: FollowHub) -> None:
        """Forget a hub that has been without followers for ``idle_s`` and close it (its
        consumer is deleted); the next follow of its workflow makes a new one."""
        for hubs in (self.hubs, self.typed):
            for key, current in list(hubs.items()):
                if current is hub:
                    del hubs[key]  # type: ignore[arg-type]  # (a key of the dict it came from)
        task = asyncio.ensure_future(hub.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def follow(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        kinds: Collection[str] | None = None,
    ) -> AsyncIterator[RawRecord]:
        # The stored records by direct get, then a shared follow consumer of the workflow
        # (``follow.FollowHub``, which hands this follower only ``kinds``): registered first, so
        # nothing falls between the two. A follower of one kind takes that kind's hub (one filter,
        # ``<prefix>.run.<workflow>.*.<kind>.>``): a handler awaiting a run's end receives its
        # ``sys`` records only, not every event of every run of the workflow.
        wanted = None if kinds is None else frozenset(kinds)
        hub = self._hub(workflow, wanted)
        queue = await hub.register(run_id, wanted)
        try:
            last = after_seq
            for rec in await self.reader.read(workflow, run_id, after_seq=after_seq):
                last = rec.seq
                if wanted is None or rec.subject.rsplit(".", 2)[1] in wanted:
                    yield rec
            while True:
                rec = await queue.get()
                if rec.seq > last:
                    last = rec.seq
                    yield rec
        finally:
            hub.unregister(run_id, queue.put_nowait)

    async def follow_callback(
        self,
        workflow: str,
        run_id: str,
        sink: Callable[[RawRecord], None],
        *,
        kinds: Collection[str] | None = None,
    ) -> Callable[[], None]:
        # The follow hub's delivery callback calls ``sink`` itself (from the protocol parser).
        wanted = None if kinds is None else frozenset(kinds)
        hub = self._hub(workflow, wanted)
        await hub.add(run_id, sink, wanted)
        return lambda: hub.unregister(run_id, sink)

    async def follow_type(
        self, workflow: str, kind: str, type_name: str, sink: Callable[[RawRecord], None]
    ) -> Callable[[], None]:
        # A follow hub of its own, filtered on that one record type of every run: a consumer of
        # one filter subject that delivers what the stream stores, so a record a message
        # schedule fires (a run timeout) reaches it too.
        key = (workflow, f"{kind}.{type_name}")
        hub = self.typed.get(key)
        if hub is None:
            subjects = f"{self.prefix}.run.{workflow}.*.{kind}.{type_name}"
            hub = self.typed[key] = self._new_hub(subjects)
        await hub.add(EVERY_RUN, sink)
        return lambda: hub.unregister(EVERY_RUN, sink)

    def _hub(self, workflow: str, kinds: frozenset[str] | None) -> FollowHub:
        """The follow hub of ``workflow`` for followers of ``kinds``: a follower of one kind takes
        that kind's hub (one filter, ``<prefix>.run.<workflow>.*.<kind>.>``), others the hub of
        every kind."""
        kind = next(iter(kinds)) if kinds is not None and len(kinds) == 1 else None
        hub = self.hubs.get((workflow, kind))
        if hub is None:
            subjects = f"{self.prefix}.run.{workflow}." + (">" if kind is None else f"*.{kind}.>")
            hub = self.hubs[(workflow, kind)] = self._new_hub(subjects)
        return hub
