"""Reading a long run fast: a push consumer made for the read, and replies that skip nats-py's
message handling.

``JetStreamLog.read`` starts every read with a batched direct get of ``FIRST_READ`` records; when
its last reply says more than ``LONG_READ`` follow, the rest comes from a consumer made for this
read (``ConsumerRead``), because:

- the server serves a batched direct get on a run's subject filter at ≈ 8.4 µs of CPU per record
  against ≈ 2.2 µs for a consumer delivery (nats-server 2.15.1, file stream, the 2-core machine
  of DESIGN.md §5; a direct get of 1,000 records took 11–14 ms, of 128 records 1.2–2 ms);
- a direct-get reply carries six server headers (``Nats-Stream``, ``-Subject``, ``-Sequence``,
  ``-Time-Stamp``, ``-Num-Pending``, ``-Last-Sequence``) that are parsed for every record; a
  delivery carries the sequence, time and pending count in its reply subject
  (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts ns>.<pending>``).

A consumer costs the server a few ms of CPU to create and delete (1–3 ms of wall time before the
first delivery), hence the direct get first: short runs (the common case) never make one.

``RawTap`` hands the messages of chosen subscriptions of a connection to a plain function before
nats-py makes a ``Msg`` of them, queues it and wakes a task for it (≈ 3 µs per message on that
machine). It is installed on the connection while a tapped subscription exists, and removed after.

Measured (scenario (d), 100,000 records): the read went from 1.7 s (direct gets through nats-py's
``Msg`` path) to ≈ 0.6 s, below an ordered-consumer replay through nats-py (≈ 0.75 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from engine.jetstream.retry import LogUnavailableError
from engine.jetstream.wire import is_status, parse_block, parse_rfc3339_ns
from engine.model.errors import LogError
from engine.model.records import RawRecord

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

__all__ = ["FIRST_READ", "LONG_READ", "WALK_DISTANCE", "WALK_MAX", "ConsumerRead", "RawTap", "ReadInbox", "direct_read", "subscribe_tapped"]

FIRST_READ = 128  # records asked for by a read's first direct get
LONG_READ = 128  # records still to read after the first direct get above which a consumer is made
WALK_MAX = 8  # records a bounded short read gets one direct get each (JetStreamLog.read)
WALK_DISTANCE = 20_000  # ... when it ends this many stream sequences or more behind the newest
INACTIVE_S = 30.0  # the server removes a read's consumer this long after its process went away
HEARTBEAT_S = 1.0  # idle heartbeat of a read's consumer (flow control needs one)
_NS = 1_000_000_000

Sink = Callable[[bytes, bytes, bytes, "bytes | None"], "Awaitable[None] | None"]


class RawTap:
    """Delivers the messages of chosen subscriptions of one nats-py connection to a function.

    The function gets ``(subject, reply, payload, header block)`` as the protocol parser has them
    (bytes; the header block ``None`` when there is none, else with its ``NATS/1.0`` line) and may
    return an awaitable, which is awaited before the next message is parsed. Messages of other
    subscriptions take nats-py's path unchanged. Works by setting ``_process_msg`` on the client
    instance (nats-py 2.16's parser calls ``self.nc._process_msg`` for every message) while at
    least one subscription is tapped (the connection's ``ReadInbox``, once it has read, stays
    tapped); a client without that method is never tapped (``usable``), nor is any client when
    ``enabled`` is false (``JetStreamLog(fast_path=False)``, ``JETLOOM_NATS_FASTPATH=0``).
    """

    def __init__(self, nc: NATS, *, enabled: bool = True) -> None:
        self.nc = nc
        self.sinks: dict[int, Sink] = {}
        self.usable = enabled and callable(getattr(nc, "_process_msg", None))
        self._next: Callable[..., Awaitable[None]] | None = None  # what handled messages before
        self._own: Any = None  # the instance's own ``_process_msg`` before ours, if it had one

    def add(self, sid: int, sink: Sink) -> None:
        if not self.sinks:
            self._own = self.nc.__dict__.get("_process_msg")
            self._next = self.nc._process_msg
            self.nc._process_msg = self._process_msg  # type: ignore[method-assign]
        self.sinks[sid] = sink

    def remove(self, sid: int) -> None:
        if self.sinks.pop(sid, None) is not None and not self.sinks:
            if self._own is None:
                self.nc.__dict__.pop("_process_msg", None)
            else:
                self.nc._process_msg = self._own  # type: ignore[method-assign]
            self._next = self._own = None

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        sink = self.sinks.get(sid)
        if sink is None:
            assert self._next is not None
            await self._next(sid, subject, reply, data, headers)
            return
        stats = self.nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        later = sink(subject, reply, data, headers)
        if later is not None:
            await later


async def subscribe_tapped(
    nc: NATS, subject: str, tap: RawTap | None, sink: Sink, cb: Callable[[Any], Awaitable[None]] | None = None
) -> Any:
    """Subscribe ``subject`` so that its messages reach ``sink`` straight from the protocol
    parser through ``tap``, or ``cb`` by nats-py's subscription path when there is no tap.
    Returns the subscription (``tap.remove(sub._id)`` before unsubscribing it)."""
    if tap is not None:
        sub = await nc.subscribe(subject)
        tap.add(sub._id, sink)
        return sub
    return await nc.subscribe(subject, cb=cb)


class ReadInbox:
    """One tapped subscription, ``<inbox>.*``, that receives the replies of every direct get of
    a connection; each get has a reply subject of its own under it and a sink for its replies.

    A subscription per get cost a ``SUB`` and an ``UNSUB`` on the wire, and the server an insert
    into and a removal from its subscription index, for every read; a worker that did not hold a
    run read it at nearly every step when several processes shared the step consumers.
    """

    def __init__(self, nc: NATS, tap: RawTap) -> None:
        self.nc = nc
        self.tap = tap
        self._prefix: str | None = None
        self._lock = asyncio.Lock()
        self._sinks: dict[bytes, Sink] = {}
        self._ids = itertools.count()

    async def open(self, sink: Sink) -> str:
        """A new reply subject whose messages go to ``sink`` until ``close``."""
        if self._prefix is None:
            async with self._lock:
                if self._prefix is None:
                    inbox = self.nc.new_inbox()
                    await subscribe_tapped(self.nc, inbox + ".*", self.tap, self._route)
                    self._prefix = inbox + "."
        reply = f"{self._prefix}{next(self._ids)}"
        self._sinks[reply.encode()] = sink
        return reply

    def close(self, reply: str) -> None:
        self._sinks.pop(reply.encode(), None)

    def _route(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> Awaitable[None] | None:
        sink = self._sinks.get(subject)
        return None if sink is None else sink(subject, reply, data, headers)


async def direct_read(
    nc: NATS, inbox: ReadInbox, stream: str, request: dict[str, Any], timeout: float
) -> tuple[list[RawRecord], int]:
    """One direct get through the connection's ``ReadInbox``: batched (``request``: ``seq``,
    ``next_by_subj``, ``batch``), or of one record (no ``batch``: the reply is that record or a
    404). Returns the records (without the server's ``Nats-*`` envelope headers, as
    ``JetStreamLog._raw`` makes them) and the ``Nats-Num-Pending`` of the last one (records after
    it matching the filter; 0 when none came or the get was of one record).

    Raises:
        LogError: the server answered with a status other than end-of-batch or not-found.
        TimeoutError: ``timeout`` seconds passed without a reply.
    """
    out: list[RawRecord] = []
    pending = [0]
    single = not request.get("batch")
    done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_msg(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if done.done():
            return
        if headers is None or is_status(headers):  # a status line: the end of the batch
            done.set_result(headers[9:12] if headers else b"")
            return
        try:
            h = parse_block(headers)
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
            done.set_result(b"204")

    reply = await inbox.open(on_msg)
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=reply)
        while True:
            seen = len(out)
            try:
                # the timeout runs from the last reply: a long batch is not cut short
                async with asyncio.timeout(timeout):
                    status = await asyncio.shield(done)
                break
            except TimeoutError:
                if len(out) == seen:
                    raise
    finally:
        inbox.close(reply)
    if status == b"503":  # no responders: no replica serves direct gets now (an election)
        raise LogUnavailableError(f"direct get on {stream}: no responders")
    if status not in (b"204", b"404"):
        raise LogError(f"direct get on {stream} failed: status {status.decode(errors='replace')}")
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
        tap: RawTap,
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
        self.tap.add(sub._id, self._on_msg)
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
            self.tap.remove(sub._id)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
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
        if is_status(headers):  # a status line: not a stored message
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
        tokens = reply.split(b".")
        if len(tokens) >= 11:  # the ADR-15 form, with domain and account hash
            tokens = tokens[:2] + tokens[4:]
        if len(tokens) < 9:
            self._finish(f"not a delivery: {reply[:80]!r}")
            return None
        cseq = int(tokens[6])
        if cseq != self._cseq + 1:
            self._finish("missed delivery")
            return None
        seq = int(tokens[5])
        if self.up_to_seq is not None and seq > self.up_to_seq:
            self._finish()
            return None
        name = self._subjects.get(subject)
        if name is None:
            name = self._subjects[subject] = subject.decode()
        h = parse_block(headers)
        self._cseq = cseq
        self.out.append(RawRecord(seq, name, h, data, int(tokens[7])))
        if tokens[8] == b"0" or seq == self.up_to_seq:
            self._finish()
        return None
