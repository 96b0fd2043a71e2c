"""``jspub.Outbox`` against nats-py's own ``Client.publish`` on a real server: every message
arrives the same (subject, reply, headers, payload), whichever path it took."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.msg import Msg

from engine.jetstream.log import FAST_PATH_ENV, JetStreamLog
from engine.jetstream.pub import Outbox
from services.natsserver import EmbeddedNats

CASES: list[tuple[str, dict[str, str] | None, bytes]] = [
    ("", None, b""),
    ("r.1", None, b"{}"),
    ("", {"Jl-Type": "StepCompleted", "Jl-Run": "abc", "Nats-Msg-Id": "abc:1:step"}, b'{"x":1}'),
    ("r.2", {"Jl-Commit": "k/1:p-1f", "Jl-Length": "12"}, b"x" * 5000),
    ("", {"Padded": "  spaced  "}, b"p"),  # nats-py strips: the outbox leaves it to nats-py
    ("", {"Broken": "line\r\nINJECT"}, b"p"),  # nats-py rewrites the line break
    ("", {"Ünicode-Name": "v"}, b"p"),  # nats-py refuses the name
    ("", {"Value": "naïve ✓"}, b"p"),
]


async def _received(server: EmbeddedNats, via_outbox: bool) -> list[tuple[str, str, dict[str, str] | None, bytes] | str]:
    nc = await nats.connect(server.url)
    got: list[Msg] = []
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        got.append(msg)
        if len(got) == len(CASES):
            done.set()

    await nc.subscribe("t.>", cb=on_msg)
    outbox = Outbox(nc)
    assert outbox.usable
    out: list[tuple[str, str, dict[str, str] | None, bytes] | str] = []
    try:
        for i, (reply, headers, payload) in enumerate(CASES):
            try:
                if via_outbox:
                    await outbox.publish(f"t.{i}", payload, reply, headers)
                else:
                    await nc.publish(f"t.{i}", payload, reply=reply, headers=headers)
            except Exception as exc:  # the same refusal either way
                out.append(type(exc).__name__)
                got.append(None)  # type: ignore[arg-type]
        await nc.flush()
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await nc.close()
    out += [(m.subject, m.reply, m.headers, m.data) for m in got if m is not None]
    return out


async def test_the_outbox_sends_what_client_publish_sends(nats_server: EmbeddedNats) -> None:
    assert await _received(nats_server, True) == await _received(nats_server, False)


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("0", False), ("off", False), (" False ", False)])
async def test_the_environment_turns_the_fast_path_off(
    nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool
) -> None:
    if value is None:
        monkeypatch.delenv(FAST_PATH_ENV, raising=False)
    else:
        monkeypatch.setenv(FAST_PATH_ENV, value)
    log = await JetStreamLog.connect(nats_server.url)
    try:
        assert log.fast_path is on and log.outbox.usable is on
        explicit = JetStreamLog(log.nc, fast_path=not on)  # the argument wins over the environment
        assert explicit.fast_path is not on and explicit.outbox.usable is not on
    finally:
        await log.close()
