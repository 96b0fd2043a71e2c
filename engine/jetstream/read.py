"""Reading a long run fast: a push consumer made for the read, and direct gets through one inbox
per connection.

``JetStreamLog.read`` starts every read with a batched direct get of ``FIRST_READ`` records; when
its last reply says more than ``LONG_READ`` follow, the rest comes from a consumer made for this
read (``ConsumerRead``), because:

- the server spends several times more CPU per record serving a batched direct get on a run's
  subject filter than delivering the record to a consumer;
- a direct-get reply carries six server headers (``Nats-Stream``, ``-Subject``, ``-Sequence``,
  ``-Time-Stamp``, ``-Num-Pending``, ``-Last-Sequence``) that are parsed for every record; a
  delivery carries the sequence, time and pending count in its reply subject
  (``wire.parse_ack_subject``).

A consumer costs the server more CPU to create and delete than a short read (and the read a wait
before the first delivery), hence the direct get first: short runs (the common case) never make one.

Every direct get of a connection (``direct_read``) has its replies on one subscription
(``ReadInbox``). On a connection with a fast path (``_natspy.Tap``) the replies and a read
consumer's deliveries reach the read straight from the protocol parser, without nats-py's
``Msg``, queue and task per message; without one, direct gets take nats-py's subscription path
and no read consumer is made. docs/architecture.md explains the read path.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from engine.jetstream._natspy import Sink, Tap
from engine.jetstream.retry import LogUnavailableError
from engine.jetstream.wire import (
    is_status,
    parse_ack_subject,
    parse_block,
    parse_rfc3339_ns,
    parse_status,
)
from engine.model.errors import LogError
from engine.model.records import RawRecord

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

__all__ = [
    "FIRST_READ",
    "LONG_READ",
    "WALK_DISTANCE",
    "WALK_MAX",
    "ConsumerRead",
    "ReadInbox",
    "ReplySink",
    "StreamHead",
    "direct_read",
    "subscribe_tapped",
]

FIRST_READ = 128  # records asked for by a read's first direct get
LONG_READ = 128  # records still to read after the first direct get above which a consumer is made
WALK_MAX = 8  # records a bounded short read gets one direct get each (JetStreamLog.read)
WALK_DISTANCE = 20_000  # ... when it ends this many stream sequences or more behind the newest
INACTIVE_S = 30.0  # the server removes a read's consumer this long after its process went away
HEARTBEAT_S = 1.0  # idle heartbeat of a read's consumer (flow control needs one)
_NS = 1_000_000_000

class StreamHead:
    """The newest stream sequence a log has seen (its appends' acks, its reads): how far behind
    the stream's end a bounded read is, which picks how it is read (``WALK_DISTANCE``)."""

    __slots__ = ("seq",)

    def __init__(self) -> None:
        self.seq = 0

    def saw(self, seq: int) -> None:
        """Advance to ``seq`` if it is newer."""
        if seq > self.seq:
            self.seq = seq


# One reply to a direct get: (status code or None for a stored message, its headers, payload).
# A status's headers hold its text as ``Description``, as nats-py gives them; a message's headers
# are a fresh dict, the sink's to change.
ReplySink = Callable[["str | None", dict[str, str], bytes], None]


async def subscribe_tapped(
    nc: NATS, subject: str, tap: Tap | None, sink: Sink, cb: Callable[[Any], Awaitable[None]] | None = None
) -> Any:
    """Subscribe ``subject`` so that its messages reach ``sink`` straight from the protocol
    parser through ``tap``, or ``cb`` by nats-py's subscription path when there is no tap.
    Returns the subscription (``tap.remove(sub)`` before unsubscribing it)."""
    if tap is not None:
        sub = await nc.subscribe(subject)
        tap.add(sub, sink)
        return sub
    return await nc.subscribe(subject, cb=cb)


async def unsubscribe_tapped(sub: Any, tap: Tap | None) -> None:
    """Undo ``subscribe_tapped``: take ``sub`` off ``tap`` and unsubscribe it (a connection
    already closed or draining is no error: its subscriptions are gone with it)."""
    if tap is not None:
        tap.remove(sub)
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


class ReadInbox:
    """One subscription, ``<inbox>.*``, that receives the replies of every direct get of a
    connection; each get has a reply subject of its own under it and a sink for its replies.

    A subscription per get cost a ``SUB`` and an ``UNSUB`` on the wire, and the server an insert
    into and a removal from its subscription index, for every read; a worker that did not hold a
    run read it at nearly every step when several processes shared the step consumers.

    Args:
        nc: the connection.
        tap: its fast path (replies straight from the protocol parser), or ``None`` (nats-py's
            subscription path).
    """

    def __init__(self, nc: NATS, tap: Tap | None) -> None:
        self.nc = nc
        self.tap = tap
        self._prefix: str | None = None
        self._lock = asyncio.Lock()
        self._sinks: dict[bytes, ReplySink] = {}
        self._ids = itertools.count()

    async def open(self, sink: ReplySink) -> str:
        """A new reply subject whose messages go to ``sink`` until ``close``."""
        if self._prefix is None:
            async with self._lock:
                if self._prefix is None:
                    inbox = self.nc.new_inbox()
                    await subscribe_tapped(self.nc, inbox + ".*", self.tap, self._route, self._on_msg)
                    self._prefix = inbox + "."
        reply = f"{self._prefix}{next(self._ids)}"
        self._sinks[reply.encode()] = sink
        return reply

    def close(self, reply: str) -> None:
        self._sinks.pop(reply.encode(), None)

    def _route(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        sink = self._sinks.get(subject)
        if sink is None:
            return
        if headers is None:
            sink("", {}, data)  # (no header block: not a direct-get reply; ends the get)
        elif is_status(headers):
            sink(*parse_status(headers), data)
        else:
            sink(None, parse_block(headers), data)

    async def _on_msg(self, msg: Msg) -> None:
        sink = self._sinks.get(msg.subject.encode())
        if sink is None:
            return
        headers = msg.headers
        if not headers:
            sink("", {}, msg.data)
        else:
            sink(headers.get("Status"), headers, msg.data)


async def direct_read(
    nc: NATS, inbox: ReadInbox, stream: str, request: dict[str, Any], timeout: float
) -> tuple[list[RawRecord], int]:
    """One direct get through the connection's ``ReadInbox``: batched (``request``: ``seq``,
    ``next_by_subj`` or ``multi_last``, ``batch``), or of one record (no ``batch``: the reply is
    that record or a 404). Returns the records (without the server's ``Nats-*`` envelope headers)
    and the ``Nats-Num-Pending`` of the last one (records after it matching the filter; 0 when
    none came or the get was of one record).

    Raises:
        LogError: the server answered with a status other than end-of-batch or not-found.
        TimeoutError: ``timeout`` seconds passed without a reply.
    """
    out: list[RawRecord] = []
    pending = [0]
    single = not request.get("batch")
    done: asyncio.Future[tuple[str, dict[str, str]]] = asyncio.get_running_loop().create_future()

    def on_msg(status: str | None, h: dict[str, str], data: bytes) -> None:
        if done.done():
            return
        if status is not None:  # a status: the end of the batch
            done.set_result((status, h))
            return
        try:
            seq = int(h.pop("Nats-Sequence"))
            name = h.pop("Nats-Subject")
            ts = parse_rfc3339_ns(h.pop("Nats-Time-Stamp"))
            h.pop("Nats-Stream", None)
            pending[0] = int(h.pop("Nats-Num-Pending", None) or 0)
            h.pop("Nats-Last-Sequence", None)
        except Exception as exc:  # raised to the reader, not to the connection's parser
            done.set_exception(exc)
            return
        out.append(RawRecord(seq, name, h, data, ts))
        if single:
            done.set_result(("204", {}))

    reply = await inbox.open(on_msg)
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=reply)
        while True:
            seen = len(out)
            try:
                # the timeout runs from the last reply: a long batch is not cut short
                async with asyncio.timeout(timeout):
                    status, status_headers = await asyncio.shield(done)
                break
            except TimeoutError:
                if len(out) == seen:
                    raise
    finally:
        inbox.close(reply)
    if status == "503":  # no responders: no replica serves direct gets now (an election)
        raise LogUnavailableError(f"direct get on {stream}: no responders")
    if status not in ("204", "404"):
        described = status_headers.get("Description")
        raise LogError(f"direct get on {stream} failed: status {status}" + (f" ({described})" if described else ""))
    return out, pending[0] if out else 0


class ConsumerRead:
    """One read of a subject filter from ``start_seq`` on, through an ephemeral push consumer
    (memory storage, no acks, one replica, flow control) made for it and deleted afterwards, on
    error too.

    ``run()`` returns the records in stream order, from ``start_seq`` up to the first one the
    server delivers with nothing pending after it, or up to ``up_to_seq``. Flow control keeps what
    the server sends ahead of this reader within its window (the server waits for an answer to
    each flow-control message, which the tap gives as soon as it parses it).

    ``complete`` is false after ``run()`` when the consumer stopped early (``stopped`` says why:
    a missed delivery, an idle heartbeat before the end, a status the read does not expect, a
    stored header block nats-py would parse differently, or ``timeout`` seconds without a
    message): the records returned are then a correct prefix and the caller reads the rest by
    other means.

    Raises (from ``run``):
        LogError: the server refused to create the consumer (e.g. the stream's consumer limit).
        TimeoutError: no answer to the consumer creation within ``timeout`` seconds.
    """

    def __init__(
        self,
        nc: NATS,
        tap: Tap,
        stream: str,
        subject_filter: str,
        start_seq: int,
        up_to_seq: int | None,
        timeout: float,
    ) -> None:
        self.nc = nc
        self.tap = tap
        self.stream = stream
        self.filter = subject_filter
        self.start_seq = start_seq
        self.up_to_seq = up_to_seq
        self.timeout = timeout
        self.out: list[RawRecord] = []
        self.complete = False
        self.stopped = ""
        self._name = f"jlr{uuid.uuid4().hex}"
        self._cseq = 0  # consumer sequence of the last delivery
        self._subjects: dict[bytes, str] = {}  # one str per distinct subject
        self._done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    async def run(self) -> list[RawRecord]:
        sub = await self.nc.subscribe(self.nc.new_inbox())
        self.tap.add(sub, self._on_msg)
        created = False
        try:
            config: dict[str, Any] = {
                "name": self._name,
                "deliver_subject": sub.subject,
                "deliver_policy": "by_start_sequence",
                "opt_start_seq": self.start_seq,
                "filter_subject": self.filter,
                "ack_policy": "none",
                "max_deliver": 1,
                "flow_control": True,
                "idle_heartbeat": int(HEARTBEAT_S * _NS),
                "mem_storage": True,
                "num_replicas": 1,
                "inactive_threshold": int(INACTIVE_S * _NS),
            }
            created = True  # (deleting a consumer that was not made is harmless)
            reply = await self.nc.request(
                f"$JS.API.CONSUMER.CREATE.{self.stream}.{self._name}",
                orjson.dumps({"stream_name": self.stream, "config": config}),
                timeout=self.timeout,
            )
            answer = orjson.loads(reply.data)
            err = answer.get("error")
            if err is not None:
                raise LogError(
                    f"read consumer on {self.filter}: {err.get('description')} "
                    f"(error code {err.get('err_code')})"
                )
            if not answer.get("num_pending"):
                self._finish()
            await self._wait()
            return self.out
        finally:
            await unsubscribe_tapped(sub, self.tap)
            if created:
                self._delete()

    async def _wait(self) -> None:
        while not self._done.done():
            seen = self._cseq
            try:
                # the timeout runs from the last delivery: a long read is not cut short
                async with asyncio.timeout(self.timeout):
                    await asyncio.shield(self._done)
            except TimeoutError:
                if self._cseq == seen:
                    self._finish(f"no delivery for {self.timeout}s")
        reason = self._done.result()
        self.complete = reason is None
        self.stopped = reason or ""

    def _finish(self, reason: str | None = None) -> None:
        """End the read: complete, or stopped early for ``reason``."""
        if not self._done.done():
            self._done.set_result(reason)

    def _delete(self) -> None:
        if not self.nc.is_closed:
            task = asyncio.ensure_future(
                self.nc.publish(
                    f"$JS.API.CONSUMER.DELETE.{self.stream}.{self._name}", b"", reply=self.nc.new_inbox()
                )
            )
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _on_msg(
        self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> Awaitable[None] | None:
        if self._done.done():
            return None
        try:
            return self._take(subject, reply, data, headers)
        except Exception as exc:  # ends this read, never the connection's parser
            self._finish(f"bad delivery: {exc!r}")
            return None

    def _take(
        self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> Awaitable[None] | None:
        if headers is not None and is_status(headers):  # a status line: not a stored message
            if reply.startswith(b"$JS.FC."):  # flow control: the server waits for this answer
                return self.nc.publish(reply.decode(), b"")
            if headers[9:12] == b"100" and not reply:
                if b"Nats-Consumer-Stalled:" in headers:
                    return None  # the server waited on flow control; its request is answered
                # an idle heartbeat: the server has nothing more for us, yet the last delivery
                # said more was pending (records deleted since?); direct gets will tell
                self._finish("idle before the end")
            else:
                self._finish(f"unexpected status {headers[:40]!r}")
            return None
        ack = parse_ack_subject(reply)
        if ack is None:
            self._finish(f"not a delivery: {reply[:80]!r}")
            return None
        cseq = ack.consumer_seq
        if cseq != self._cseq + 1:
            self._finish("missed delivery")
            return None
        seq = ack.stream_seq
        if self.up_to_seq is not None and seq > self.up_to_seq:
            self._finish()
            return None
        name = self._subjects.get(subject)
        if name is None:
            name = self._subjects[subject] = subject.decode()
        h = parse_block(headers)
        self._cseq = cseq
        self.out.append(RawRecord(seq, name, h, data, ack.time_ns))
        if ack.pending == 0 or seq == self.up_to_seq:
            self._finish()
        return None
