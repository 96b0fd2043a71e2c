"""``services.cli._serve``: how a process command ends on an expected failure."""

from __future__ import annotations

import pytest
import typer

from engine.jetstream.retry import LogUnavailableError
from services.cli import _serve


async def _fails(exc: BaseException) -> None:
    raise exc


def test_a_log_without_leader_after_its_budget_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """Set-up at start-up during a leader election that outlasts the retry budget (or a control
    plane's rebuild that gave up): one line on stderr, exit code 1, no traceback."""
    exc = LogUnavailableError("stream info of JETLOOM: JetStream 503 stream is offline (gave up after 20s)")
    with pytest.raises(typer.Exit) as raised:
        _serve("worker", _fails(exc), debug=False)
    assert raised.value.exit_code == 1
    err = capsys.readouterr().err
    assert err == "jetloom worker: stream info of JETLOOM: JetStream 503 stream is offline (gave up after 20s)\n"


def test_debug_shows_the_traceback_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        _serve("control-plane", _fails(LogUnavailableError("no leader")), debug=True)
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("jetloom control-plane: no leader\n")
