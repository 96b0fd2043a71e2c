"""``_natspy.ProtocolParser`` against nats-py's own ``Parser``: the same random protocol streams,
cut into the same random pieces, make the same calls on the client in the same order, and the
same errors."""

from __future__ import annotations

import random
from typing import Any

import pytest
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from engine.jetstream._natspy import ProtocolParser, install_protocol_parser


class Recorder:
    """Stands in for the client: records what the parser hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), data, headers))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))


def _frame(rng: random.Random) -> bytes:
    kind = rng.choices(["msg", "hmsg", "ok", "ping", "pong", "info", "err"], [30, 50, 3, 3, 3, 2, 1])[0]
    sp = rng.choice([b" ", b"  ", b"\t", b" \t "])
    subject = b"jetloom.run.W.%d.evt.E" % rng.randrange(10**6)
    reply = rng.choice([b"", b"_INBOX.abc.%d" % rng.randrange(1000), b"$JS.ACK.S.C.1.2.3.4.0"])
    payload = rng.randbytes(rng.choice([0, 1, 5, 200, 5000]))
    if kind == "msg":
        args = [b"MSG", subject, b"%d" % rng.randrange(1, 99)] + ([reply] if reply else []) + [b"%d" % len(payload)]
        return sp.join(args) + b"\r\n" + payload + b"\r\n"
    if kind == "hmsg":
        hdr = b"NATS/1.0\r\nJl-Run: r%d\r\nNats-Msg-Id: k\r\n\r\n" % rng.randrange(99)
        if rng.random() < 0.2:
            hdr = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\n\r\n"
        args = [b"HMSG", subject, b"%d" % rng.randrange(1, 99)] + ([reply] if reply else [])
        args += [b"%d" % len(hdr), b"%d" % (len(hdr) + len(payload))]
        return sp.join(args) + b"\r\n" + hdr + payload + b"\r\n"
    if kind == "ok":
        return b"+OK\r\n"
    if kind == "ping":
        return b"PING\r\n"
    if kind == "pong":
        return b"PONG\r\n"
    if kind == "info":
        return b'INFO {"server_id":"x","max_payload":1048576,"headers":true}\r\n'
    return b"-ERR 'Stale Connection'\r\n"


async def _run(parser_cls: type, stream: bytes, cuts: list[int]) -> tuple[list[tuple[Any, ...]], str | None]:
    nc = Recorder()
    parser = parser_cls(nc)
    error = None
    try:
        last = 0
        for cut in [*cuts, len(stream)]:
            await parser.parse(stream[last:cut])
            last = cut
    except ProtocolError as exc:
        error = str(exc)
    return nc.calls, error


@pytest.mark.parametrize("seed", range(40))
async def test_same_calls_as_nats_py_on_random_streams(seed: int) -> None:
    rng = random.Random(seed)
    stream = b"".join(_frame(rng) for _ in range(rng.randrange(1, 120)))
    if seed % 10 == 9:
        stream += rng.choice([b"BOGUS line\r\n", b"MSG subject notanumber 5\r\nhello\r\n", b"HMSG a 1 x 5\r\n"])
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randrange(0, 60))))
    ours = await _run(ProtocolParser, stream, cuts)
    theirs = await _run(Parser, stream, cuts)
    assert ours == theirs
    assert ours[0], "the stream made calls"


async def test_install_carries_a_half_parsed_message_over() -> None:
    nc = Recorder()
    nc._ps = Parser(nc)  # type: ignore[attr-defined]
    frame = b"HMSG s 7 r 12 17\r\nNATS/1.0\r\n\r\nhello\r\n"
    await nc._ps.parse(frame[:25])  # type: ignore[attr-defined]
    install_protocol_parser(nc)
    assert isinstance(nc._ps, ProtocolParser)  # type: ignore[attr-defined]
    await nc._ps.parse(frame[25:])  # type: ignore[attr-defined]
    assert nc.calls == [("msg", 7, b"s", b"r", b"hello", b"NATS/1.0\r\n\r\n")]
