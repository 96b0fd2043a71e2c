"""The NATS protocol parser of the log's connection: nats-py 2.16's ``Parser`` semantics, with a
cursor into the read buffer instead of a copy of the buffer's rest after every message.

nats-py's parser matches up to seven regular expressions against the buffer for every control
line (``MSG`` first, so a JetStream ``HMSG`` line is matched twice) and deletes each message from
the front of its ``bytearray``, which moves everything behind it: a socket read holding a hundred
messages is moved a hundred times. It was 6 % of a worker's CPU and 11 % of a client's following
many runs (py-spy, the (b) scenario of ``benchmarks``). ``ProtocolParser`` splits ``MSG`` and
``HMSG`` lines on whitespace, keeps an offset, and compacts the buffer once per read. Every other
control line (``+OK``, ``-ERR``, ``PING``, ``PONG``, ``INFO``) is matched with nats-py's own
expressions, so its handling is nats-py's. It calls the client exactly as nats-py's parser does
(``_process_msg(sid, subject, reply, payload, headers)`` and the rest); a differential test feeds
both parsers the same random streams in random pieces.

``install_protocol_parser(nc)`` swaps it in on one connected client, carrying over whatever the
old parser held (the swap happens between two reads, so that is a whole parser state).
"""

from __future__ import annotations

import json
from typing import Any

from nats.errors import ProtocolError
from nats.protocol import parser as nats_parser

__all__ = ["ProtocolParser", "install_protocol_parser"]

AWAITING_CONTROL_LINE = nats_parser.AWAITING_CONTROL_LINE
AWAITING_MSG_PAYLOAD = nats_parser.AWAITING_MSG_PAYLOAD
_CRLF = b"\r\n"


class ProtocolParser:
    """A drop-in for ``nats.protocol.parser.Parser`` (same attributes, ``reset`` and ``parse``)."""

    def __init__(self, nc: Any = None) -> None:
        self.nc = nc
        self.reset()

    def __repr__(self) -> str:
        return f"<jetloom protocol parser state={self.state}>"

    def reset(self) -> None:
        self.buf = bytearray()
        self.state = AWAITING_CONTROL_LINE
        self.needed = 0
        self.header_needed = 0
        self.msg_arg: dict[str, Any] = {}

    async def parse(self, data: bytes = b"") -> None:
        """Parse what ``data`` completes and dispatch it to the client, in order."""
        buf = self.buf
        buf.extend(data)
        pos = 0
        try:
            while pos < len(buf):
                if self.buf is not buf:
                    return  # reset by the client while a message was dispatched (a reconnect)
                if self.state == AWAITING_MSG_PAYLOAD:
                    end = pos + self.needed
                    if len(buf) < end + 2:
                        break
                    hn = self.header_needed
                    if hn:
                        hdr: bytes | None = bytes(buf[pos : pos + hn])
                        payload = bytes(buf[pos + hn : end])
                        self.header_needed = 0
                    else:
                        hdr = None
                        payload = bytes(buf[pos:end])
                    pos = end + 2
                    self.state = AWAITING_CONTROL_LINE
                    arg = self.msg_arg
                    await self.nc._process_msg(arg["sid"], arg["subject"], arg["reply"], payload, hdr)
                    continue
                eol = buf.find(_CRLF, pos)
                if eol < 0:
                    break  # a control line split between reads (an INFO line may be long)
                first = buf[pos]
                if first == 0x48 or first == 0x4D:  # H(MSG) / M(SG)
                    parts = bytes(buf[pos:eol]).split()
                    if self._message_line(parts):
                        pos = eol + 2
                        continue
                pos = await self._other_line(bytes(buf[pos : eol + 2]), pos, eol)
        finally:
            if self.buf is buf and pos:
                del buf[:pos]

    def _message_line(self, parts: list[bytes]) -> bool:
        """Take an ``MSG``/``HMSG`` control line split on whitespace; ``False`` if it is not one
        (left to ``_other_line``, which raises as nats-py would)."""
        op = parts[0] if parts else b""
        try:
            if op == b"HMSG" and len(parts) in (5, 6):
                self.header_needed = int(parts[-2])
            elif op == b"MSG" and len(parts) in (4, 5):
                self.header_needed = 0
            else:
                return False
            self.needed = int(parts[-1])
            sid = int(parts[2])
        except ValueError:
            raise ProtocolError("nats: malformed MSG") from None
        arg = self.msg_arg
        arg["subject"] = parts[1]
        arg["sid"] = sid
        arg["reply"] = parts[3] if len(parts) == (6 if op == b"HMSG" else 5) else b""
        self.state = AWAITING_MSG_PAYLOAD
        return True

    async def _other_line(self, line: bytes, pos: int, eol: int) -> int:
        """Any other control line, through nats-py's own expressions; returns the new offset."""
        nc = self.nc
        if nats_parser.OK_RE.match(line):
            return eol + 2
        err = nats_parser.ERR_RE.match(line)
        if err:
            await nc._process_err(err.groups()[0].decode().lower())
            return eol + 2
        if nats_parser.PING_RE.match(line):
            await nc._process_ping()
            return eol + 2
        if nats_parser.PONG_RE.match(line):
            await nc._process_pong()
            return eol + 2
        info = nats_parser.INFO_RE.match(line)
        if info:
            await nc._process_info(json.loads(info.groups()[0].decode()))
            return eol + 2
        if nats_parser.MSG_RE.match(line) or nats_parser.HMSG_RE.match(line):
            raise ProtocolError("nats: malformed MSG")
        raise ProtocolError("nats: unknown protocol")


def install_protocol_parser(nc: Any) -> None:
    """Give the connected client ``nc`` a ``ProtocolParser`` in place of nats-py's, with the old
    parser's state. A client whose parser is not nats-py's ``Parser`` is left as it is."""
    old = getattr(nc, "_ps", None)
    if type(old) is not nats_parser.Parser:
        return
    new = ProtocolParser(nc)
    new.buf = old.buf
    new.state = old.state
    new.needed = old.needed
    new.header_needed = old.header_needed
    new.msg_arg = old.msg_arg
    nc._ps = new
