"""Durable timers on the run stream: a message schedule (``Nats-Schedule: @at ...``) on the run's
``sch.<name>`` subject that the server stores on its target subject when it fires."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from nats.js.client import JetStreamContext
from nats.js.errors import APIError

from engine.jetstream.retry import retrying
from engine.model.errors import AppendError, LogError
from engine.model.records import OutMessage
from engine.wire.subjects import parse_subject, run_subject

__all__ = ["Timers"]


class Timers:
    """The timers of one log (``EventLog.schedule`` and ``unschedule``).

    Args:
        nc: the connection.
        js: its JetStream context.
        stream: the run stream.
        prefix: the subject prefix.
        timeout: seconds to wait for the server's answer.
        retry_for: seconds a transient failure is retried (``retry.retrying``).
    """

    def __init__(
        self, nc: Any, js: JetStreamContext, *, stream: str, prefix: str, timeout: float, retry_for: float
    ) -> None:
        self.nc = nc
        self.js = js
        self.stream = stream
        self.prefix = prefix
        self.timeout = timeout
        self.retry_for = retry_for

    async def schedule(
        self, message: OutMessage, *, at_ns: int, name: str, idempotency_key: str
    ) -> None:
        """``EventLog.schedule``: store ``message`` at ``at_ns`` (ns since the epoch; now if past).

        Raises:
            ValueError: ``message.subject`` is not a run subject.
            AppendError: the server refused the schedule.
        """
        parts = parse_subject(message.subject)
        if parts is None:
            raise ValueError(f"not a run subject: {message.subject!r}")
        at = datetime.fromtimestamp(max(at_ns, time.time_ns()) / 1e9, tz=UTC)
        headers = {
            **message.headers,
            "Nats-Schedule": "@at " + at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "Nats-Schedule-Target": message.subject,
            "Nats-Msg-Id": idempotency_key,
        }
        subject = run_subject(self.prefix, parts.workflow, parts.run_id, "sch", name)
        # (its Nats-Msg-Id makes a repeat a duplicate)
        reply = await retrying(
            f"schedule on {subject}",
            lambda: self.nc.request(subject, message.data, headers=headers, timeout=self.timeout),
            retry_for=self.retry_for,
        )
        err = orjson.loads(reply.data).get("error")
        if err is not None:
            raise AppendError(f"schedule rejected: {err.get('description')}", code=err.get("err_code"))

    async def unschedule(self, workflow: str, run_id: str, name: str) -> None:
        """``EventLog.unschedule``: drop the timer ``name`` of the run (nothing if there is none).

        Raises:
            LogError: the server refused the purge.
        """
        # A message schedule lives as long as its message: the server drops the timer when the
        # message is purged (ADR-51), and a purge of a subject with no message is a no-op.
        subject = run_subject(self.prefix, workflow, run_id, "sch", name)
        try:
            await retrying(
                "purge of " + subject,
                lambda: self.js.purge_stream(self.stream, subject=subject),
                retry_for=self.retry_for,
            )
        except APIError as exc:
            raise LogError(f"the purge of {subject} was refused: {exc.description}") from exc
