"""The one module that uses nats-py's private API: the log's fast path, behind a gate.

The JetStream log runs every message through nats-py's public API (``Client.publish``,
``Client.subscribe`` with a callback, ``Msg`` objects, nats-py's protocol and header parsers), or,
on a connection that passes the gate, through the fast operations here, which skip those
per-message layers and produce the same bytes and the same results:

- ``ProtocolParser`` replaces the connection's parser (``Client._ps``): it splits ``MSG`` and
  ``HMSG`` lines on whitespace and keeps an offset into the read buffer, where nats-py's parser
  matches regular expressions and deletes each message from the front of the buffer.
- ``wire.parse_header_lines`` replaces the connection's header parser
  (``Client._parse_header_lines``, set on that instance only).
- ``Tap`` hands the messages of chosen subscriptions to a plain function straight from the parser
  (``Client._process_msg``, by subscription id ``Subscription._id``), without a ``Msg``, a queue
  and a task per message; and it queues already-built protocol bytes on the connection's outgoing
  buffer (``_pending``, ``_pending_data_size``, ``_flush_queue``, ``_flush_pending``,
  ``_flusher_task``, ``_max_pending_size``), which ``pub.Outbox`` builds.

docs/architecture.md explains why the fast path exists and what it saves.

The gate (``tap``) runs once per connection, when the first log is made on it: the installed
nats-py must be a version this code was tested with (``TESTED``), and every attribute and method
used here must exist with the signature it is called with (``check``). On any mismatch the log
says so in one WARNING line and runs on nats-py's public API: slower, same behaviour. The
environment variable ``JETLOOM_NATS_FASTPATH=0`` (or ``JetStreamLog(fast_path=False)``) forces the
public path without a warning.

Qualifying a new nats-py (a minor release outside ``TESTED``):

1. Install it in a scratch environment and run ``python -c "import nats; from
   engine.jetstream._natspy import check_installed; print(check_installed())"``: every line
   printed names an attribute or signature that changed; adapt this module to it.
2. Read upstream's changes to ``nats/aio/client.py``, ``nats/aio/subscription.py`` and
   ``nats/protocol/parser.py`` since the tested version: a private method may keep its name and
   signature and still change what it does (how the flusher is woken, what ``_process_msg``
   counts in ``stats``).
3. Run the unit tests that compare this module with nats-py (``tests/unit/test_jsproto.py``,
   ``tests/unit/test_jswire.py``, ``tests/unit/test_natspy_gate.py``) and ``make test``, which
   runs the contract and integration suites on both paths.
4. Run ``python -m benchmarks -s p`` (jetloom's chain with the fast path on and off) to see that
   the fast path still pays for itself.
5. Widen ``TESTED`` and the ``nats-py`` pin in ``pyproject.toml`` to the new minor.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import logging
import os
import re
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.errors import ProtocolError
from nats.protocol import parser as nats_parser

from engine.jetstream.wire import parse_header_lines

__all__ = [
    "FAST_PATH_ENV",
    "TESTED",
    "ProtocolParser",
    "Sink",
    "Tap",
    "check",
    "check_installed",
    "fast_path_from_env",
    "install_header_parser",
    "install_protocol_parser",
    "installed_version",
    "tap",
]

logger = logging.getLogger("jetloom.log")

FAST_PATH_ENV = "JETLOOM_NATS_FASTPATH"
# The nats-py releases this module was tested with: (major, minor) from, and up to but excluding.
TESTED = ((2, 16), (2, 17))

# (subject, reply, payload, header block): the header block as the parser has it (``None`` when
# the message has none, else with its ``NATS/1.0`` line); an awaitable returned is awaited before
# the next message is parsed.
Sink = Callable[[bytes, bytes, bytes, "bytes | None"], "Awaitable[None] | None"]

# What the fast path calls on the client, with the parameters (after ``self``) it passes.
_CLIENT_METHODS: dict[str, tuple[str, ...]] = {
    "_process_msg": ("sid", "subject", "reply", "data", "headers"),
    "_process_err": ("err_msg",),
    "_process_ping": (),
    "_process_pong": (),
    "_process_info": ("info", "initial_connection"),
    "_flush_pending": ("force_flush",),
}
# What it reads or changes on a client instance, with the type it must have.
_CLIENT_STATE: dict[str, type | tuple[type, ...]] = {
    "_ps": nats_parser.Parser,
    "_pending": list,
    "_pending_data_size": int,
    "_max_pending_size": int,
    "_flush_queue": (asyncio.Queue, type(None)),
    "_flusher_task": (asyncio.Future, type(None)),
    "stats": dict,
}
_STATS = ("in_msgs", "in_bytes", "out_msgs", "out_bytes")
_PARSER_STATE = ("buf", "state", "needed", "header_needed", "msg_arg")
_PARSER_NAMES = ("AWAITING_CONTROL_LINE", "AWAITING_MSG_PAYLOAD")
_PARSER_PATTERNS = ("OK_RE", "ERR_RE", "PING_RE", "PONG_RE", "INFO_RE", "MSG_RE", "HMSG_RE")

_verdicts: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()
_taps: weakref.WeakKeyDictionary[Any, Tap] = weakref.WeakKeyDictionary()
_told_off: weakref.WeakSet[Any] = weakref.WeakSet()


def fast_path_from_env() -> bool:
    """Whether the fast path is wanted by the environment: ``JETLOOM_NATS_FASTPATH`` unset or
    anything but ``0``, ``false``, ``no`` or ``off`` (any case) means wanted (the default)."""
    return os.environ.get(FAST_PATH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def installed_version() -> str:
    """The version of the installed ``nats-py`` distribution (``""`` when it has no metadata)."""
    try:
        return importlib.metadata.version("nats-py")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _version_problem(version: str) -> str | None:
    low, high = TESTED
    m = re.match(r"(\d+)\.(\d+)", version)
    tested = f"{low[0]}.{low[1]}.x" if high == (low[0], low[1] + 1) else f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    if m is None:
        return f"nats-py version {version or 'unknown'} (tested: {tested})"
    if not low <= (int(m[1]), int(m[2])) < high:
        return f"nats-py {version} (tested: {tested})"
    return None


def _parameters(func: Any) -> tuple[str, ...] | None:
    """The parameter names of ``func`` after ``self`` (``None`` if it has no signature)."""
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None
    return tuple(params[1:] if params[:1] == ["self"] else params)


def check(nc: Any, *, version: str | None = None) -> list[str]:
    """What the fast path needs and ``nc`` (a connected nats-py client) does not offer.

    Args:
        nc: the client.
        version: the nats-py version to judge (default: the installed one, ``installed_version``).

    Returns:
        One line per mismatch (the version outside ``TESTED``, a missing attribute, a changed
        signature or type); empty when the fast path can run on ``nc``.
    """
    out: list[str] = []
    problem = _version_problem(installed_version() if version is None else version)
    if problem is not None:
        out.append(problem)
    cls = type(nc)
    for name, params in _CLIENT_METHODS.items():
        method = getattr(cls, name, None)
        if not callable(method):
            out.append(f"{cls.__name__}.{name} is missing")
        elif _parameters(method) != params:
            out.append(f"{cls.__name__}.{name} has parameters {_parameters(method)}, expected {params}")
    header_parser = inspect.getattr_static(cls, "_parse_header_lines", None)
    if not isinstance(header_parser, staticmethod) or _parameters(header_parser.__func__) != ("raw",):
        out.append(f"{cls.__name__}._parse_header_lines is not a static method of (raw)")
    for name, kind in _CLIENT_STATE.items():
        if not hasattr(nc, name):
            out.append(f"{cls.__name__}.{name} is missing")
        elif not isinstance(getattr(nc, name), kind):
            out.append(f"{cls.__name__}.{name} is a {type(getattr(nc, name)).__name__}")
    stats = getattr(nc, "stats", None)
    if isinstance(stats, dict) and not all(k in stats for k in _STATS):
        out.append(f"{cls.__name__}.stats lacks one of {', '.join(_STATS)}")
    ps = getattr(nc, "_ps", None)
    if isinstance(ps, nats_parser.Parser):
        if type(ps) is not nats_parser.Parser:
            out.append(f"the connection's parser is a {type(ps).__name__}, not nats-py's Parser")
        missing = [a for a in _PARSER_STATE if not hasattr(ps, a)]
        if missing:
            out.append(f"Parser lacks {', '.join(missing)}")
    missing = [n for n in _PARSER_NAMES if not hasattr(nats_parser, n)]
    missing += [n for n in _PARSER_PATTERNS if not callable(getattr(getattr(nats_parser, n, None), "match", None))]
    if missing:
        out.append(f"nats.protocol.parser lacks {', '.join(missing)}")
    if _parameters(Subscription.__init__) is None or "id" not in (_parameters(Subscription.__init__) or ()):
        out.append("Subscription() takes no id")
    elif getattr(Subscription(nc, id=7), "_id", None) != 7:
        out.append("Subscription._id does not hold the subscription id")
    return out


def check_installed() -> list[str]:
    """``check`` of a fresh client of the installed nats-py (not connected: the flush queue and
    the flusher task it judges are ``None`` until a connect)."""
    return check(Client())


def tap(nc: Any, *, enabled: bool = True) -> Tap | None:
    """The fast path of connection ``nc``, or ``None`` when the log must use nats-py's public API.

    The first call for a connection runs the gate (``check``); on a mismatch it logs one WARNING
    naming what did not match, and every call for that connection returns ``None``. When the
    gate passes, the first call installs ``ProtocolParser`` and ``wire.parse_header_lines`` on
    the connection; every call returns the same ``Tap``.

    Args:
        nc: a connected nats-py client.
        enabled: ``False`` (``JETLOOM_NATS_FASTPATH=0``, ``JetStreamLog(fast_path=False)``):
            return ``None`` without running the gate (one INFO line per connection).
    """
    if not enabled:
        if nc not in _told_off:
            _told_off.add(nc)
            logger.info("nats fast path off (%s=0 or fast_path=False): the log runs on nats-py's public API", FAST_PATH_ENV)
        return None
    verdict = _verdicts.get(nc)
    if verdict is None:
        verdict = _verdicts[nc] = tuple(check(nc))
        if verdict:
            logger.warning(
                "nats fast path off: %s; the log runs on nats-py's public API (slower, same behaviour)",
                "; ".join(verdict),
            )
    if verdict:
        return None
    found = _taps.get(nc)
    if found is None:
        install_header_parser(nc)
        install_protocol_parser(nc)
        found = _taps[nc] = Tap(nc)
    return found


class Tap:
    """The fast operations on one connection that passed the gate (made by ``tap``).

    Receiving: ``add(sub, sink)`` makes the messages of subscription ``sub`` reach ``sink`` from
    the protocol parser (see ``Sink``), counted in the client's ``stats`` as nats-py counts them;
    messages of other subscriptions take nats-py's path unchanged. It works by setting
    ``_process_msg`` on the client instance while at least one subscription is tapped.

    Sending: ``queue(cmd, size)`` appends protocol bytes to the connection's outgoing buffer
    (``cmd``: one whole ``PUB``/``HPUB``; ``size``: its payload's length); ``flush`` and
    ``wake_writer`` get them written.
    """

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.sinks: dict[int, Sink] = {}
        self._next: Callable[..., Awaitable[None]] | None = None  # what handled messages before
        self._own: Any = None  # the instance's own ``_process_msg`` before ours, if it had one

    # ---- receiving ---------------------------------------------------------------------------

    def add(self, sub: Subscription, sink: Sink) -> None:
        """Deliver the messages of ``sub`` to ``sink`` until ``remove(sub)``."""
        nc = self.nc
        if not self.sinks:
            self._own = nc.__dict__.get("_process_msg")
            self._next = nc._process_msg
            nc._process_msg = self._process_msg
        self.sinks[sub._id] = sink

    def remove(self, sub: Subscription) -> None:
        """Stop tapping ``sub`` (before unsubscribing it)."""
        if self.sinks.pop(sub._id, None) is not None and not self.sinks:
            if self._own is None:
                self.nc.__dict__.pop("_process_msg", None)
            else:
                self.nc._process_msg = self._own
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

    # ---- sending -----------------------------------------------------------------------------

    def queue(self, cmd: bytes, size: int) -> None:
        """Append one message's protocol bytes ``cmd`` (payload of ``size`` bytes) to the
        outgoing buffer, counted as ``Client.publish`` counts it; nothing is written yet."""
        nc = self.nc
        nc._pending.append(cmd)
        nc._pending_data_size += len(cmd)
        stats = nc.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size

    async def flush(self) -> None:
        """Wake the connection's writer for what was queued, as ``Client.publish`` does after
        each message, or write at once past the connection's pending-size limit."""
        nc = self.nc
        if nc._max_pending_size > 0 and nc._pending_data_size > nc._max_pending_size:
            await nc._flush_pending(force_flush=True)
        elif nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()

    def wake_writer(self) -> None:
        """``flush`` from a plain callback: wake the writer if something is queued and the writer
        is not awake already (without awaiting; a writer that is not running is started by a
        task, as ``_flush_pending`` does)."""
        nc = self.nc
        queue = nc._flush_queue
        if not nc._pending_data_size or queue is None or not queue.empty():
            return  # written already, or the writer is awake
        flusher = nc._flusher_task
        if nc.is_connected and flusher is not None and not flusher.done():
            queue.put_nowait(asyncio.get_running_loop().create_future())  # what _flush_pending does
        else:
            asyncio.ensure_future(nc._flush_pending())


# ---- the protocol parser ---------------------------------------------------------------------

AWAITING_CONTROL_LINE = nats_parser.AWAITING_CONTROL_LINE
AWAITING_MSG_PAYLOAD = nats_parser.AWAITING_MSG_PAYLOAD
_CRLF = b"\r\n"


class ProtocolParser:
    """A drop-in for ``nats.protocol.parser.Parser`` (same attributes, ``reset`` and ``parse``)
    that keeps a cursor into the read buffer instead of copying the buffer's rest after every
    message.

    ``MSG`` and ``HMSG`` lines are split on whitespace, and the buffer is compacted once per read.
    Every other control line (``+OK``, ``-ERR``, ``PING``, ``PONG``, ``INFO``) is matched with
    nats-py's own expressions, so its handling is nats-py's. It calls the client exactly as
    nats-py's parser does (``_process_msg(sid, subject, reply, payload, headers)`` and the rest).
    """

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
        """Parse what ``data`` completes and dispatch it to the client, in order.

        Raises:
            nats.errors.ProtocolError: a malformed or unknown control line (as nats-py's parser).
        """
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


def install_header_parser(nc: Any) -> None:
    """Make client ``nc`` parse message headers with ``wire.parse_header_lines`` (an attribute of
    this instance only, which nats-py calls as ``self._parse_header_lines``)."""
    nc._parse_header_lines = parse_header_lines


def install_protocol_parser(nc: Any) -> None:
    """Give the connected client ``nc`` a ``ProtocolParser`` in place of nats-py's, with the old
    parser's state (the swap happens between two reads, so that is a whole parser state). A
    client whose parser is not nats-py's ``Parser`` is left as it is."""
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
