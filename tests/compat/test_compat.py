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
from tests.integration.test_distributed import completions

NAMES = program_names()
_reference: dict[str, Any] = {}
_step_pids: list[str] = []  # per step completed in the distributed runs, the process that did it


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
        runner = distributed_runner(client)
        output = await asyncio.wait_for(main(runner), RUN_TIMEOUT)
        for workflow, run_id in runner.started:
            raws = await client.log.read(workflow.workflow_name, run_id)
            _step_pids.extend(c.worker.rsplit(":", 1)[1] for c in completions(raws, workflow))
    assert comparable(output) == expected


def test_distributed_steps_ran_in_both_worker_processes(compat_hosts: list[ChildProcess]) -> None:
    """The distributed runs above took their steps in both worker processes (read from the
    completions in their logs), and in no other."""
    if len(_step_pids) < 30:
        pytest.skip("too few distributed runs in this session to expect both processes in them")
    assert set(_step_pids) == {str(host.pid) for host in compat_hosts}


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
