"""Publishing on the log's hot path: the protocol bytes of a message built in one pass, queued on
the connection's outgoing buffer, and the connection's writer woken once per batch.

nats-py's ``Client.publish`` checks the subject and the reply subject with a regular expression
each, checks every header name with another and rebuilds every header value (strip, CR/LF
translation) before it makes the ``HPUB`` line, then wakes its flusher through a future put on a
queue for every message; a step's commit (3-4 messages) and its trigger's ack went through that
path. ``Outbox`` writes the same bytes: header names are checked once per distinct name, values
and subjects with ``str`` membership tests, and a message that would need nats-py's rewriting (a
value with surrounding whitespace or a line break, a subject with whitespace) takes
``Client.publish`` itself, as does every message while the connection is not connected (nats-py
then buffers or refuses it).

The bytes are queued and the writer woken by the connection's ``_natspy.Tap``; on a connection
without one (the gate of ``_natspy`` refused it, or ``JETLOOM_NATS_FASTPATH=0``) every message
takes ``Client.publish``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from engine.jetstream._natspy import tap
from engine.jetstream.wire import parse_block

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

__all__ = ["Outbox"]

logger = logging.getLogger("jetloom.log")

_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # the header names nats-py accepts
_WHITESPACE = frozenset(" \t\r\n\x0b\x0c")
_LATER = 4  # event-loop turns an acknowledgement waits for a publish to ride with


def _plain(text: str) -> bool:
    """No whitespace at either end and no line break: nats-py would send ``text`` unchanged."""
    return bool(text) and text[0] not in _WHITESPACE and text[-1] not in _WHITESPACE and (
        "\r" not in text and "\n" not in text
    )


class Outbox:
    """Queues messages on one nats-py connection.

    ``put`` queues (or, when it cannot, returns ``False`` and the caller uses ``Client.publish``);
    ``flush`` wakes the connection's writer once for everything queued since.

    Args:
        nc: the connection.
        enabled: ``False`` makes ``usable`` false whatever the client has, so every message takes
            ``Client.publish`` (``JetStreamLog(fast_path=False)``); ``True`` asks the connection
            for its fast path (``_natspy.tap``), which the gate may refuse.
    """

    def __init__(self, nc: NATS, *, enabled: bool = True) -> None:
        self.nc = nc
        self.tap = tap(nc, enabled=enabled)
        self.usable = self.tap is not None
        self._names: set[str] = set()
        self._later = False
        self._sending: set[asyncio.Future[None]] = set()  # relays through Client.publish

    def put(self, subject: str, payload: bytes, reply: str = "", headers: Mapping[str, str] | None = None) -> bool:
        """Queue one message; ``False`` (nothing queued) when it must go through
        ``Client.publish``: the connection is not connected, or a subject or header is not one
        nats-py would send unchanged."""
        nc = self.nc
        if self.tap is None or not nc.is_connected or len(payload) > nc.max_payload:
            return False
        if not subject or " " in subject or "\t" in subject or "\r" in subject or "\n" in subject:
            return False
        if reply and (" " in reply or "\r" in reply or "\n" in reply or "\t" in reply):
            return False
        if headers:
            parts = ["NATS/1.0\r\n"]
            names = self._names
            for k, v in headers.items():
                if k not in names:
                    if not _NAME.fullmatch(k):
                        return False
                    names.add(k)
                if not _plain(v):
                    return False
                parts.append(f"{k}: {v}\r\n")
            parts.append("\r\n")
            hdr = "".join(parts).encode()
            n = len(hdr)
            cmd = b"".join(
                (f"HPUB {subject} {reply} {n} {n + len(payload)}\r\n".encode(), hdr, payload, b"\r\n")
            )
        else:
            cmd = b"".join((f"PUB {subject} {reply} {len(payload)}\r\n".encode(), payload, b"\r\n"))
        self.tap.queue(cmd, len(payload))
        return True

    async def flush(self) -> None:
        """Wake the connection's writer for what ``put`` queued (as ``Client.publish`` does after
        each message), or flush at once past the connection's pending-size limit. Nothing when
        not ``usable`` (``Client.publish`` woke it)."""
        if self.tap is not None:
            await self.tap.flush()

    def later(self, subject: str, payload: bytes) -> bool:
        """Queue one message (a delivery's acknowledgement) and wake the writer only after
        ``_LATER`` more turns of the event loop, so that a publish made meanwhile (the next step's
        commit) goes out in the same write; ``False`` when it must go through ``Client.publish``.

        Without this a worker in sequential runs wrote the commit and then its trigger's ack in
        two socket writes per step transition. Turns, not a timer: a timer cost more than it
        saved (``benchmarks/tried.md``)."""
        if not self.put(subject, payload):
            return False
        self._wake_later()
        return True

    def relay(self, subject: str, payload: bytes, headers: Mapping[str, str], reply: str = "") -> None:
        """Send one message on from a plain callback (run affinity's hand-off of a delivery,
        ``pull.PullLoop``): queued and written as ``later`` does, so that the hand-offs of one
        socket read go out in one write; through ``Client.publish`` in a task when ``put``
        cannot take it (the task is kept until it is done)."""
        if self.put(subject, payload, reply, headers):
            self._wake_later()
            return
        task = asyncio.ensure_future(self.nc.publish(subject, payload, reply=reply, headers=dict(headers)))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def relay_block(
        self, subject: str, payload: bytes, block: bytes, name: str, value: str, reply: str = ""
    ) -> None:
        """``relay`` of a message whose headers are a raw header block as the protocol parser
        received it (``NATS/1.0`` line included), with one header ``name: value`` added: the
        block is sent on as it is, not parsed and rebuilt; parsed and ``relay``-ed when ``put``
        could not have taken it (not connected, a payload over the limit, a subject or the added
        value that nats-py would rewrite)."""
        nc = self.nc
        if (
            self.tap is not None
            and nc.is_connected
            and len(payload) <= nc.max_payload
            and _plain(value)
            and " " not in subject + reply
            and "\t" not in subject + reply
            and block.endswith(b"\r\n\r\n")
        ):
            hdr = b"".join((block[:-2], f"{name}: {value}\r\n\r\n".encode()))
            n = len(hdr)
            line = f"HPUB {subject} {reply} {n} {n + len(payload)}\r\n".encode()
            self.tap.queue(b"".join((line, hdr, payload, b"\r\n")), len(payload))
            self._wake_later()
            return
        self.relay(subject, payload, {**parse_block(block), name: value}, reply)

    def _sent(self, task: asyncio.Future[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # (unsettled, the delivery is redelivered after ack_wait: nothing is lost)
            logger.warning("hand-off not sent (%s); redelivered after ack_wait", task.exception())

    def _wake_later(self) -> None:
        if not self._later:
            self._later = True
            asyncio.get_running_loop().call_soon(self._turn, _LATER)

    def _turn(self, left: int) -> None:
        if left > 1:
            asyncio.get_running_loop().call_soon(self._turn, left - 1)
            return
        self._later = False
        if self.tap is not None:
            self.tap.wake_writer()

    async def publish(
        self, subject: str, payload: bytes, reply: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        """One message, by ``put`` + ``flush`` when it can, else by ``Client.publish``."""
        if self.put(subject, payload, reply, headers):
            await self.flush()
        else:
            await self.nc.publish(subject, payload, reply=reply, headers=dict(headers) if headers else None)
