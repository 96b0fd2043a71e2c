"""Per-message parsing on the JetStream read path, kept cheap because it runs for every record.

- ``parse_header_lines`` parses a header block as nats-py's client does, without its
  per-character generator (on a direct-get message of 11 headers that cost more than the rest of
  a read); ``_natspy`` makes the log's connection use it.
- ``parse_ack_subject`` takes a JetStream delivery's reply subject apart (delivery count,
  sequences, server timestamp, pending count).
- ``parse_rfc3339_ns`` converts a server timestamp, parsing each distinct second once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import NamedTuple

from engine.wire.headers import (
    H_ATTEMPT,
    H_CLASS,
    H_COMMIT,
    H_FAN_OUT,
    H_LENGTH,
    H_NEW_RUN,
    H_RUN,
    H_STEP,
    H_TARGET,
    H_TRIGGER,
    H_TYPE,
    H_WORKER,
)

__all__ = [
    "AckSubject",
    "is_status",
    "parse_ack_subject",
    "parse_block",
    "parse_header_lines",
    "parse_rfc3339_ns",
    "parse_status",
]

_NS = 1_000_000_000
_CRLF = b"\r\n"
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips (str.strip() strips more)
# ``\s`` of a str pattern is what ``str.isspace`` accepts (nats-py drops names holding any).
_SPACE = re.compile(r"\s")
# Names that hold no ``:`` and no whitespace: on a line ``<one of them>: <value>`` the first colon
# follows the name, so the line parses to ``(name, value.strip())`` without the general checks.
_WELL_FORMED = frozenset(
    [H_TYPE, H_RUN, H_STEP, H_TRIGGER, H_TARGET, H_ATTEMPT, H_CLASS, H_COMMIT, H_LENGTH, H_NEW_RUN, H_WORKER]
    + [H_FAN_OUT]
    + ["Nats-Msg-Id"]
    + ["Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Num-Pending"]
    + ["Nats-Last-Sequence"]
)
_SECONDS: dict[str, int] = {}  # "2026-11-21T11:01:46" -> ns since the epoch
_SECONDS_MAX = 4096


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """A NATS header block (``Name: Value\\r\\n`` per line, without the ``NATS/1.0`` line) as a
    dict, exactly as nats-py 2.16's client parses one: lines without a
    colon, names that are not ASCII or hold whitespace are skipped; names and values are
    stripped; values decode as UTF-8 with replacement characters; a repeated name keeps its last
    value."""
    out: dict[str, str] = {}
    if raw.isascii():  # the usual case: decode the block once
        for line in raw.decode("ascii").split("\r\n"):
            name, sep, value = line.partition(": ")
            if sep and name in _WELL_FORMED:
                out[name] = value.strip(_ASCII_SPACE)
                continue
            name, sep, value = line.partition(":")
            if not sep:
                continue
            key = name.strip(_ASCII_SPACE)
            if _SPACE.search(key) is None:
                out[key] = value.strip(_ASCII_SPACE)
        return out
    for raw_line in raw.split(_CRLF):
        raw_name, raw_sep, raw_value = raw_line.partition(b":")
        if not raw_sep:
            continue
        try:
            key = raw_name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _SPACE.search(key) is not None:
            continue
        out[key] = raw_value.strip().decode("utf-8", "replace")
    return out


_HDR_SKIP = len(b"NATS/1.0\r\n")


def is_status(block: bytes | None) -> bool:
    """Whether a raw header block (as the protocol parser hands it, ``NATS/1.0`` line included)
    is a status message (``NATS/1.0 <code> <description>``), not a stored message's headers."""
    return block is not None and block[8:9] == b" "


def parse_block(block: bytes | None) -> dict[str, str]:
    """The headers of a raw header block of a message (not a status), as a dict."""
    return parse_header_lines(block[_HDR_SKIP:]) if block is not None else {}


def parse_status(block: bytes) -> tuple[str, dict[str, str]]:
    """``(code, headers)`` of a status block: the code (``"408"``), and its headers with the
    status line's text as ``Description``, as nats-py gives them."""
    line, _, rest = block.partition(b"\r\n")
    headers = parse_header_lines(rest) if rest.strip() else {}
    headers["Description"] = line[13:].decode(errors="replace").strip()
    return line[9:12].decode(), headers


class AckSubject(NamedTuple):
    """A JetStream delivery's reply subject, taken apart (``parse_ack_subject``)."""

    stream: str
    consumer: str
    delivered: int  # how many times this message was delivered to the consumer (1: the first)
    stream_seq: int
    consumer_seq: int
    time_ns: int  # when the server stored the message, ns since the epoch (not rounded)
    pending: int  # messages still pending for the consumer after this one


def parse_ack_subject(reply: str | bytes) -> AckSubject | None:
    """The parts of a JetStream ack subject: ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream
    seq>.<consumer seq>.<ts ns>.<pending>``, or the ADR-15 form with a domain and an account hash
    after ``$JS.ACK`` (and a random token at the end). Keeps the server's nanoseconds, which
    nats-py's ``Msg.metadata`` rounds to microseconds.

    Returns:
        The parts, or ``None`` when ``reply`` is not an ack subject (another token count, or a
        number that does not parse).
    """
    text = reply.decode() if isinstance(reply, bytes) else reply
    tokens = text.split(".")
    if len(tokens) >= 11:  # the ADR-15 form
        tokens = tokens[:2] + tokens[4:]
    elif len(tokens) != 9:
        return None
    try:
        return AckSubject(
            tokens[2], tokens[3], int(tokens[4]), int(tokens[5]), int(tokens[6]), int(tokens[7]), int(tokens[8])
        )
    except ValueError:
        return None


def parse_rfc3339_ns(text: str) -> int:
    """``2026-11-21T11:01:46.971872205Z`` → nanoseconds since the epoch (nanosecond precision,
    which ``datetime`` cannot hold). UTC only, as the server writes it."""
    main, _, frac = text.rstrip("Z").partition(".")
    base = _SECONDS.get(main)
    if base is None:
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()
        base = _SECONDS[main] = int(datetime.fromisoformat(main).replace(tzinfo=UTC).timestamp()) * _NS
    return base + int((frac + "000000000")[:9])
