"""Appending to the run stream: pipelined publishes, each with its own ack (the default), or one
atomic batch (``commit="batch"``); see ``JetStreamLog``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from engine.jetstream._natspy import Tap
from engine.jetstream.acks import AckInbox
from engine.jetstream.pub import Outbox
from engine.jetstream.read import StreamHead
from engine.jetstream.retry import LogUnavailableError, retrying
from engine.model.errors import AppendError, CommitTooLargeError, LastSeqMismatchError
from engine.model.records import OutMessage, RawRecord
from engine.ports.log import AppendResult
from engine.wire.codec import subject_parts
from engine.wire.headers import execution_of, message_id
from engine.wire.subjects import run_filter

__all__ = ["Appender"]

ERR_BATCH_DUPLICATE = 10201  # "atomic publish batch contains duplicate message id"
ERR_BATCH_TOO_LARGE = 10199  # "atomic publish batch is too large"
ERR_WRONG_LAST_SEQ = 10071  # "wrong last sequence"
_H_EXPECTED_SEQ = "Nats-Expected-Last-Subject-Sequence"  # the run check of _expect
_H_EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"


class Appender:
    """The appends of one log.

    Args:
        nc: the connection.
        stream: the run stream.
        prefix: the subject prefix.
        atomic: one atomic batch per multi-message append (``commit="batch"``).
        timeout: seconds to wait for a publish ack.
        retry_for: seconds a transient failure is retried (``retry.retrying``).
        tap: the connection's fast path (acks straight from the parser), or ``None``.
        outbox: the log's ``pub.Outbox``.
        head: the newest stream sequence the log has seen, advanced by the acks.
    """

    def __init__(
        self,
        nc: Any,
        *,
        stream: str,
        prefix: str,
        atomic: bool,
        timeout: float,
        retry_for: float,
        tap: Tap | None,
        outbox: Outbox,
        head: StreamHead,
    ) -> None:
        self.nc = nc
        self.stream = stream
        self.prefix = prefix
        self.atomic = atomic
        self.timeout = timeout
        self.retry_for = retry_for
        self.tap = tap
        self.outbox = outbox
        self.head = head
        self._acks: AckInbox | None = None

    async def close(self) -> None:
        if self._acks is not None:
            await self._acks.close()

    async def append(
        self,
        messages: Sequence[OutMessage],
        *,
        idempotency_key: str | None = None,
        indices: Sequence[int] | None = None,
        expected_last_seq: int | None = None,
    ) -> AppendResult:
        """``EventLog.append`` (see ``JetStreamLog``)."""
        if not messages:
            return AppendResult(None, 0)
        # Retried whole through a leader election: every message carries its Nats-Msg-Id, so what
        # an attempt stored is reported a duplicate to the next (the server checks the id before
        # the expected last sequence), and the commit protocol completes a partial one.
        if self.atomic and len(messages) > 1 and indices is None:
            return await retrying(
                "append to " + self.stream,
                lambda: self._append_batch(messages, idempotency_key),
                retry_for=self.retry_for,
            )
        return await retrying(
            "append to " + self.stream,
            lambda: self._append_pipelined(messages, idempotency_key, indices, expected_last_seq),
            retry_for=self.retry_for,
        )

    async def _append_pipelined(
        self,
        messages: Sequence[OutMessage],
        key: str | None,
        indices: Sequence[int] | None,
        expected_last_seq: int | None,
    ) -> AppendResult:
        limit = self.nc.max_payload
        for m in messages:
            if len(m.data) > limit:
                raise CommitTooLargeError(
                    f"a message of {len(m.data):,} bytes exceeds the server's max_payload of "
                    f"{limit:,} bytes (a commit's first record carries a copy of everything the "
                    "step emitted; raise max_payload in the server config, see nats.conf)",
                )
        positions = list(indices) if indices is not None else list(range(len(messages)))
        head_first = positions[0] == 0 and (key is not None or expected_last_seq is not None)
        futures = []
        for n, (m, i) in enumerate(zip(messages, positions, strict=True)):
            headers = dict(m.headers)
            if n == 0 and expected_last_seq is not None:
                self._expect(headers, m.subject, expected_last_seq)
            if key is not None:  # (index 0: the key itself, no commit tag to parse)
                headers["Nats-Msg-Id"] = message_id(key, i, execution_of(m.headers) if i else None)
            futures.append(await self._send(m.subject, m.data, headers))
        await self.outbox.flush()
        # All at once: the head decides whose commit stands, and the fold leaves out what another
        # execution's messages put in the log meanwhile (engine.wire.commit), so nothing waits for it.
        acks = await self._gather(futures)
        if head_first and acks[0].get("duplicate"):
            seq = int(acks[0].get("seq") or 0)
            return AppendResult(seq or None, 0, duplicate=True, seqs=(seq,))
        seqs = tuple(int(a.get("seq") or 0) for a in acks)
        self.head.saw(seqs[-1])
        count = sum(1 for a in acks if not a.get("duplicate"))
        return AppendResult(seqs[-1] or None, count, duplicate=count == 0, seqs=seqs)

    def predecessor(self, record: RawRecord) -> int | None:
        """``EventLog.predecessor``: the expected last sequence of the run that ``record``'s
        append carried (``expected_last_seq``), or ``None``."""
        h = record.headers
        value = h.get(_H_EXPECTED_SEQ)
        if value is None or not value.isdigit():
            return None
        parts = subject_parts(record.subject)  # (remembered per subject: a run uses a handful)
        if parts is None or h.get(_H_EXPECTED_SUBJECT) != run_filter(self.prefix, parts.workflow, parts.run_id):
            return None
        return int(value)

    def _expect(self, headers: dict[str, str], subject: str, expected_last_seq: int) -> None:
        """Add to ``headers`` the check that the run of ``subject`` ends at ``expected_last_seq``."""
        parts = subject_parts(subject)
        if parts is None:
            raise ValueError(f"not a run subject: {subject!r}")
        headers[_H_EXPECTED_SEQ] = str(expected_last_seq)
        headers[_H_EXPECTED_SUBJECT] = run_filter(self.prefix, parts.workflow, parts.run_id)

    async def _send(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Future[bytes]:
        """Queue a publish with a reply subject of our own (sent at ``self.outbox.flush()``); the
        future resolves to the ack (and fails with ``LogError`` when none comes within the
        request timeout: ``acks``)."""
        acks = self._acks
        if acks is None:
            acks = self._acks = AckInbox(self.nc, self.tap, self.timeout)
        if not acks.ready:
            await acks.open()
        reply, future = acks.new()
        try:
            if not self.outbox.put(subject, data, reply, headers):
                await self.nc.publish(subject, data, reply=reply, headers=headers or None)
        except BaseException:
            acks.drop(reply)
            raise
        return future

    async def _gather(self, futures: list[asyncio.Future[bytes]]) -> list[dict[str, Any]]:
        try:
            datas = [await f for f in futures]
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()
        acks = []
        for data in datas:
            if not data:  # a 503 status: nobody serves the stream's subjects (no leader)
                raise LogUnavailableError("append: no responders (the stream has no leader)")
            ack = orjson.loads(data)
            err = ack.get("error")
            if err is not None:
                code = err.get("err_code")
                cls = LastSeqMismatchError if code == ERR_WRONG_LAST_SEQ else AppendError
                raise cls(f"append rejected: {err.get('description')}", code=code)
            acks.append(ack)
        return acks

    async def _append_batch(self, messages: Sequence[OutMessage], key: str | None) -> AppendResult:
        last = messages[-1]
        batch_id = uuid.uuid4().hex
        for i, m in enumerate(messages[:-1], 1):
            headers = {**m.headers, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)}
            if i == 1 and key is not None:
                headers["Nats-Msg-Id"] = key
            await self.nc.publish(m.subject, m.data, headers=headers)
        headers = dict(last.headers)
        headers["Nats-Batch-Id"] = batch_id
        headers["Nats-Batch-Sequence"] = str(len(messages))
        headers["Nats-Batch-Commit"] = "1"
        reply = await self.nc.request(last.subject, last.data, headers=headers, timeout=self.timeout)
        ack = orjson.loads(reply.data)
        err = ack.get("error")
        if err is not None:
            code = err.get("err_code")
            if code == ERR_BATCH_DUPLICATE:
                return AppendResult(None, 0, duplicate=True)
            if code == ERR_BATCH_TOO_LARGE:
                raise CommitTooLargeError(
                    f"append of {len(messages)} messages rejected: {err.get('description')} "
                    "(raise jetstream.limits.batch.max_msgs in the server config; see nats.conf)",
                    code=code,
                )
            raise AppendError(f"append rejected: {err.get('description')}", code=code)
        return AppendResult(ack["seq"], len(messages))
