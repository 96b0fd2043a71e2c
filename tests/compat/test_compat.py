"""The differential suite: each program of tests/compat/programs run on llama-index-workflows
(the reference, live), on jetloom in-process and on jetloom distributed (a JetStream log, two
worker processes), outputs compared. See tests/compat/harness.py."""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path
from typing import Any

import pytest

from services.nats_client import NatsClient
from services.natsserver import EmbeddedNats
from services.supervisor import ChildProcess
from tests.compat.harness import (
    PROGRAMS,
    RUN_TIMEOUT,
    comparable,
    differences,
    distributed_runner,
    jetloom_module,
    local_run,
    program_names,
    reference_module,
    rewrite,
)

NAMES = program_names()
_reference: dict[str, Any] = {}


async def reference_output(name: str) -> Any:
    """The program's output on llama-index-workflows, computed live (once per session)."""
    if name not in _reference:
        main = reference_module(name).main
        _reference[name] = comparable(await asyncio.wait_for(main(local_run), RUN_TIMEOUT))
    return _reference[name]


def _params(target: str) -> list[Any]:
    """The programs as parameters; a declared difference is a strict xfail that only a mismatch
    of outputs satisfies (an import error or a timeout still fails)."""
    out = []
    for name in NAMES:
        reason = differences(reference_module(name)).get(target)
        marks = [pytest.mark.xfail(strict=True, reason=reason, raises=AssertionError)] if reason else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def test_enough_programs() -> None:
    assert len(NAMES) >= 40


@pytest.mark.parametrize("name", NAMES)
def test_rewrite_touches_only_import_lines(name: str) -> None:
    """The migration is the import lines: every line the rewrite changes is one of them, and
    nothing of ``workflows`` is left."""
    source = (PROGRAMS / f"{name}.py").read_text()
    rewritten = rewrite(source)
    changed = [
        line
        for line in difflib.ndiff(source.splitlines(), rewritten.splitlines())
        if line.startswith("- ")
    ]
    assert changed, "a program imports from workflows"
    assert all(line.lstrip("- ").startswith("from workflows") for line in changed)
    assert "workflows" not in "\n".join(
        line for line in rewritten.splitlines() if line.lstrip().startswith(("from ", "import "))
    )


@pytest.mark.parametrize("name", _params("inprocess"))
async def test_inprocess_matches_reference(name: str, compat_dir: Path) -> None:
    expected = await reference_output(name)
    main = jetloom_module(name, compat_dir).main
    assert comparable(await asyncio.wait_for(main(local_run), RUN_TIMEOUT)) == expected


@pytest.mark.parametrize("name", _params("distributed"))
async def test_distributed_matches_reference(
    name: str, compat_dir: Path, compat_nats: EmbeddedNats, compat_hosts: list[ChildProcess]
) -> None:
    expected = await reference_output(name)
    main = jetloom_module(name, compat_dir).main
    async with await NatsClient.connect(compat_nats.url) as client:
        output = await asyncio.wait_for(main(distributed_runner(client)), RUN_TIMEOUT)
    assert comparable(output) == expected


def test_hosts_serve_every_valid_workflow(compat_hosts: list[ChildProcess]) -> None:
    """Both worker processes serve every workflow of every program, except the deliberately
    invalid ones of the validation programs (which a worker refuses to serve)."""
    for host in compat_hosts:
        refused = [
            line
            for line in host.lines
            if line.startswith(("compat host skipped", "compat host import failed"))
            and "_validation_" not in line
        ]
        assert refused == [], "\n".join(refused)
