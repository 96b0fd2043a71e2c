"""Dead letters: a record a step gave up on, copied to the dead-letter stream
(``<prefix>.dlq.<workflow>.<consumer>``) with the reason, and read back."""

from __future__ import annotations

from nats.js.client import JetStreamContext

from engine.jetstream.reader import Reader
from engine.jetstream.retry import retrying
from engine.model.records import RawRecord
from engine.ports.log import DeadLetter
from engine.wire.subjects import parse_subject

__all__ = ["DeadLetters"]


class DeadLetters:
    """The dead letters of one log (``EventLog.dead_letter`` and ``dead_letters``).

    Args:
        js: the connection's JetStream context.
        dlq_stream: the dead-letter stream.
        prefix: the subject prefix.
        retry_for: seconds a transient failure is retried (``retry.retrying``).
        reader: reads the dead-letter stream back.
    """

    def __init__(self, js: JetStreamContext, *, dlq_stream: str, prefix: str, retry_for: float, reader: Reader) -> None:
        self.js = js
        self.dlq_stream = dlq_stream
        self.prefix = prefix
        self.retry_for = retry_for
        self.reader = reader

    async def dead_letter(self, record: RawRecord, *, reason: str, consumer: str) -> None:
        parts = parse_subject(record.subject)
        wf = parts.workflow if parts else "unknown"
        headers = {
            "Jl-Reason": reason[:4000].replace("\r", " ").replace("\n", " "),
            "Jl-Original-Subject": record.subject,
            "Jl-Original-Seq": str(record.seq),
            "Jl-Consumer": consumer,
        }
        await retrying(
            "dead letter to " + self.dlq_stream,
            lambda: self.js.publish(
                f"{self.prefix}.dlq.{wf}.{consumer}", record.data, stream=self.dlq_stream, headers=headers
            ),
            retry_for=self.retry_for,
        )

    async def dead_letters(self) -> list[DeadLetter]:
        records = await retrying(
            "read of " + self.dlq_stream,
            lambda: self.reader.scan_stream(self.dlq_stream, f"{self.prefix}.dlq.>", 0, None),
            retry_for=self.retry_for,
        )
        out = []
        for rec in records:
            h = rec.headers
            out.append(
                DeadLetter(
                    seq=rec.seq,
                    subject=rec.subject,
                    original_subject=h.get("Jl-Original-Subject", ""),
                    original_seq=int(h["Jl-Original-Seq"]) if "Jl-Original-Seq" in h else None,
                    reason=h.get("Jl-Reason", ""),
                    consumer=h.get("Jl-Consumer", ""),
                    data=rec.data,
                )
            )
        return out
