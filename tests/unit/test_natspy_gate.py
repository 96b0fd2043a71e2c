"""The gate of ``_natspy``: it accepts the installed nats-py, and names what does not match on a
version outside the tested range, a client class lacking an attribute or with a changed
signature; ``tap`` then logs one WARNING per connection and gives no fast path."""

from __future__ import annotations

import logging
import pathlib
import re
from typing import Any

import pytest
from nats.aio.client import Client
from nats.protocol.parser import Parser

from engine.jetstream import _natspy
from engine.jetstream._natspy import ProtocolParser, Tap, check, check_installed, tap
from engine.jetstream.wire import parse_header_lines


def without(name: str) -> type:
    """A copy of nats-py's ``Client`` class without ``name`` (as a nats-py that renamed it)."""
    attrs = {k: v for k, v in vars(Client).items() if k not in ("__dict__", "__weakref__", name)}
    return type("Client", (), attrs)


class ChangedFlush(Client):
    """nats-py's client with ``_flush_pending`` taking one more parameter."""

    async def _flush_pending(self, force_flush: bool = False, wait: bool = False) -> Any:  # type: ignore[override]
        return await super()._flush_pending(force_flush)


class OtherParser(Parser):
    """A parser that is not nats-py's own (the client was given another one)."""


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jetloom.log" and r.levelno == logging.WARNING]


def test_the_gate_accepts_the_installed_nats_py() -> None:
    assert check_installed() == []
    assert check(Client()) == []


@pytest.mark.parametrize("version", ["2.17.0", "2.15.4", "3.0.0", "1.16.0", "", "dev"])
def test_a_version_outside_the_tested_range_is_named(version: str) -> None:
    problems = check(Client(), version=version)
    assert len(problems) == 1
    assert "nats-py" in problems[0] and "tested: 2.16.x" in problems[0]


@pytest.mark.parametrize("version", ["2.16.0", "2.16.7", "2.16.1rc1"])
def test_a_version_inside_the_tested_range_passes(version: str) -> None:
    assert check(Client(), version=version) == []


@pytest.mark.parametrize("name", ["_process_msg", "_process_err", "_process_info", "_flush_pending"])
def test_a_client_class_lacking_a_method_is_named(name: str) -> None:
    assert check(without(name)()) == [f"Client.{name} is missing"]


def test_a_client_class_lacking_the_header_parser_is_named() -> None:
    assert check(without("_parse_header_lines")()) == ["Client._parse_header_lines is not a static method of (raw)"]


def test_a_changed_signature_is_named() -> None:
    problems = check(ChangedFlush())
    assert len(problems) == 1
    assert "_flush_pending" in problems[0] and "'wait'" in problems[0]


def test_a_client_lacking_state_or_with_another_parser_is_named() -> None:
    nc = Client()
    del nc._pending_data_size  # type: ignore[attr-defined]
    assert check(nc) == ["Client._pending_data_size is missing"]
    nc = Client()
    nc._ps = OtherParser(nc)  # type: ignore[attr-defined]
    assert check(nc) == ["the connection's parser is a OtherParser, not nats-py's Parser"]


def test_tap_installs_the_fast_path_once_per_connection(caplog: pytest.LogCaptureFixture) -> None:
    nc = Client()
    first = tap(nc)
    assert isinstance(first, Tap) and tap(nc) is first
    assert isinstance(nc._ps, ProtocolParser)  # type: ignore[attr-defined]
    assert nc._parse_header_lines is parse_header_lines  # type: ignore[attr-defined]
    assert warnings(caplog) == []


def test_tap_refuses_with_one_warning_per_connection(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_natspy, "installed_version", lambda: "2.17.0")
    nc = Client()
    assert tap(nc) is None and tap(nc) is None
    assert type(nc._ps) is Parser  # type: ignore[attr-defined]  # left as nats-py made it
    [line] = warnings(caplog)
    assert "nats-py 2.17.0 (tested: 2.16.x)" in line and "public API (slower, same behaviour)" in line
    assert tap(Client()) is None
    assert len(warnings(caplog)) == 2  # one per connection


def test_tap_turned_off_says_so_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jetloom.log")
    nc = Client()
    assert tap(nc, enabled=False) is None and tap(nc, enabled=False) is None
    assert type(nc._ps) is Parser  # type: ignore[attr-defined]
    assert warnings(caplog) == []
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "public API" in infos[0]
    assert isinstance(tap(nc), Tap)  # asked for it explicitly later: the gate still runs


def test_nothing_outside_natspy_touches_nats_py_privates() -> None:
    """The rest of engine/jetstream reaches nats-py only through its public API and ``_natspy``."""
    root = pathlib.Path(_natspy.__file__).parent
    private = re.compile(
        r"\b(nc|sub|client|msg|js)\._(?!_)"
        r"|\._(ps|process_\w+|pending\w*|flush_\w+|flusher_task|parse_header_lines|max_pending_size|id)\b"
        r"|nats\.protocol"
    )
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(root.glob("*.py"))
        if path.name != "_natspy.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert offenders == []
