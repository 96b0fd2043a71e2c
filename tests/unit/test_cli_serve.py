"""``services.cli._serve``: how a process command ends on an expected failure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer

from engine.jetstream.retry import LogUnavailableError
from services.cli import _serve
from services.loading import load_workflow


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


def test_a_module_that_does_not_import_is_two_lines_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 19: the cause (module tried, where the error is) and a hint, exit code 2."""
    (tmp_path / "broken_flows_mod.py").write_text("import json\nx = 1 / 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "broken_flows_mod", raising=False)

    async def load(target: str) -> None:
        load_workflow(target)

    for target, cause, hint in [
        (
            "broken_flows_mod:Wf",
            f"ZeroDivisionError: division by zero at {tmp_path / 'broken_flows_mod.py'}:2",
            f"fix the module (imported from {tmp_path})",
        ),
        (
            "no_such_flows_mod.sub:Wf",
            f"no such module in {tmp_path} or on PYTHONPATH",
            "run from the project directory or set PYTHONPATH",
        ),
    ]:
        with pytest.raises(typer.Exit) as raised:
            _serve("worker", load(target), debug=False)
        assert raised.value.exit_code == 2
        first, second = capsys.readouterr().err.splitlines()
        assert first.startswith(f"jetloom worker: cannot import '{target.split(':')[0]}' (for {target}): ")
        assert first.endswith(cause), first
        assert second.startswith(f"  hint: {hint}"), second
