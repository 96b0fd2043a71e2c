"""The read path's own header and timestamp parsing agree with nats-py and ``datetime``."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client

from engine.jetstream._natspy import install_header_parser
from engine.jetstream.wire import parse_header_lines, parse_rfc3339_ns

BLOCKS = [
    b"",
    b"\r\n",
    b"Jl-Run: r1\r\nJl-Step: count\r\nJl-Trigger: 12\r\n\r\n",
    b"Nats-Subject: a.b.c\r\nNats-Sequence: 5\r\nNats-Time-Stamp: 2026-11-21T11:01:46.9Z\r\n\r\n",
    b"Name:Value\r\nName2:\tTabbed \r\n  Spaced  :  x  \r\n",
    b"no colon line\r\nk: v\r\n",
    b"bad name: x\r\nok: y\r\n",
    b"k: first\r\nk: second\r\n",
    b"caf\xc3\xa9: x\r\nk: caf\xc3\xa9\r\nbroken: \xff\xfe\r\n",
    b"sep\x1cname: x\r\nv: a\x1cb\x1c\r\n\x1fk\x1f: w\r\n",
    b"empty:\r\n:novalue\r\n",
]


@pytest.mark.parametrize("raw", BLOCKS)
def test_header_parser_matches_nats_py(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_header_parser_matches_nats_py_on_random_blocks() -> None:
    rng = random.Random(5)
    alphabet = b"ab:: \t\r\n\x0b\x0c\x1c\x1f\x85\xc3\xa9\xff-"
    for _ in range(3000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        assert parse_header_lines(raw) == Client._parse_header_lines(raw), raw


def test_header_parser_matches_nats_py_around_well_formed_names() -> None:
    # lines that start like the engine's own headers take a shortcut; nats-py must still agree
    rng = random.Random(7)
    pieces = [b"Jl-Run", b"Jl-Trigger", b"Nats-Sequence", b"Jl-Runs", b":", b": ", b" ", b"\t", b"x", b"\r\n", b"\x0b", b"\xc3\xa9"]
    for _ in range(3000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 12)))
        assert parse_header_lines(raw) == Client._parse_header_lines(raw), raw


def test_header_parser_is_installed_on_the_instance_only() -> None:
    nc = Client()
    install_header_parser(nc)
    assert nc._parse_header_lines is parse_header_lines
    assert Client()._parse_header_lines is not parse_header_lines


@pytest.mark.parametrize(
    "text",
    ["2026-11-21T11:01:46.971872205Z", "2026-11-21T11:01:46Z", "1970-01-01T00:00:00.5Z", "2026-11-21T11:01:46.1Z"],
)
def test_rfc3339_ns(text: str) -> None:
    main, _, frac = text.rstrip("Z").partition(".")
    secs = int(datetime.fromisoformat(main).replace(tzinfo=UTC).timestamp())
    want = secs * 1_000_000_000 + int((frac + "0" * 9)[:9])
    assert parse_rfc3339_ns(text) == want
    assert parse_rfc3339_ns(text) == want  # the second from the cache this time
    other = f"{main}.000000042Z"  # the same second cached, another fraction
    assert parse_rfc3339_ns(other) == secs * 1_000_000_000 + 42
