"""The differential suite as a table: ``python -m tests.compat.table [NAME_PART ...]``.

Runs every program (or those whose name contains one of the arguments) on the reference, on
jetloom in-process and on jetloom distributed (its own nats-server and two worker hosts, as the
tests), and prints a Markdown table: per program, whether each jetloom target gave the
reference's output, and for a mismatch the first line of the error or of the two outputs. The
pytest suite (tests/compat/test_compat.py) is the check; this is its summary for a reader.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from services.nats_client import NatsClient
from services.natsserver import EmbeddedNats
from tests.compat.harness import (
    RUN_TIMEOUT,
    comparable,
    differences,
    distributed_runner,
    generate,
    jetloom_module,
    local_run,
    program_names,
    reference_module,
    start_hosts,
)


async def _output(main: Any, runner: Any) -> tuple[bool, Any]:
    try:
        return True, comparable(await asyncio.wait_for(main(runner), RUN_TIMEOUT))
    except Exception as exc:  # reported in the table, not raised
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0][:160]


def _cell(expected: Any, ok: bool, got: Any, declared: str | None) -> tuple[str, str]:
    if ok and got == expected:
        return ("XPASS (declared difference holds no more)" if declared else "yes"), ""
    if declared:
        return "declared difference", declared
    note = got if not ok else f"got {json.dumps(got)[:120]}"
    return "no", str(note)


async def table(names: list[str], gen_dir: Path, nats_url: str) -> list[str]:
    rows = ["| program | in-process | distributed | note |", "|---|---|---|---|"]
    async with await NatsClient.connect(nats_url) as client:
        for name in names:
            ref_ok, expected = await _output(reference_module(name).main, local_run)
            if not ref_ok:
                rows.append(f"| {name} | - | - | the reference failed: {expected} |")
                continue
            declared = differences(reference_module(name))
            cells: list[str] = []
            notes: dict[str, list[str]] = {}  # note -> the targets it is about
            try:
                module = jetloom_module(name, gen_dir)
            except Exception as exc:  # an import failure fails both targets
                err = f"import: {type(exc).__name__}: {exc}".splitlines()[0]
                rows.append(f"| {name} | no | no | {err} |")
                continue
            for target, runner in (("inprocess", local_run), ("distributed", distributed_runner(client))):
                ok, got = await _output(module.main, runner)
                cell, note = _cell(expected, ok, got, declared.get(target))
                cells.append(cell)
                if note:
                    notes.setdefault(note, []).append(target)
            note = "; ".join(
                text if len(targets) == 2 else f"{targets[0]}: {text}" for text, targets in notes.items()
            )
            rows.append(f"| {name} | {cells[0]} | {cells[1]} | {note} |".replace("\n", " "))
    return rows


def main(parts: list[str]) -> None:
    names = [n for n in program_names() if not parts or any(p in n for p in parts)]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(port=0, store_dir=Path(tmp) / "nats") as server:
        gen_dir = generate(Path(tmp) / "gen")
        hosts = start_hosts(gen_dir, server.url)
        try:
            rows = asyncio.run(table(names, gen_dir, server.url))
        finally:
            for host in hosts:
                host.stop(timeout=10)
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
