"""The crash loop: many runs whose steps each append one line to a file, while worker processes
are killed with SIGKILL and restarted. At the end every run is complete and every step's line is
in the file exactly once (the steps de-duplicate their write with ``ctx.idempotency_key``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.launcher import WorkerProcess
from services.nats_client import NatsClient
from tests.crashloop import Lines
from tests.integration.procs import eventually

TARGET = "tests.crashloop:Lines"
STEPS = ("one", "two", "three")


def _lines(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split(" ")) for line in path.read_text().splitlines()]  # type: ignore[misc]


def _close_gate(gate: Path | None, closed: bool) -> None:
    """Create (``closed``) or remove the gate file the steps wait at; nothing without a gate."""
    if gate is not None:
        if closed:
            gate.touch()
        else:
            gate.unlink()


async def _crash_loop(
    nats_url: str,
    start_worker: Callable[..., Awaitable[WorkerProcess]],
    path: Path,
    *,
    runs: int,
    kill: Callable[[list[WorkerProcess], Path], Awaitable[bool]],
    hold: float = 0.02,
    gate: Path | None = None,
) -> tuple[int, int]:
    """Run ``runs`` runs over two workers; ``kill(live, path)`` waits for the moment of the next
    kill and says whether to go on killing. With ``gate``, the steps are paused (the gate file
    exists) from that moment until the replacement worker is ready, so the runs cannot all end
    while a kill is under way. Returns how many kills happened and how many step executions
    were repeats (a step run again after its process was killed)."""
    live = [await start_worker(TARGET, "--ack-wait", "1") for _ in range(2)]
    kills = 0
    async with await NatsClient.connect(nats_url) as client:
        handlers = [
            await client.start(Lines, path=str(path), hold=hold, gate=str(gate or ""), timeout=600)
            for _ in range(runs)
        ]
        results = asyncio.gather(*handlers)

        async def chaos() -> None:
            nonlocal kills
            while not results.done() and await kill(live, path):
                if results.done():
                    return
                _close_gate(gate, True)
                victim = live.pop(0)
                victim.kill()
                await victim.stop(timeout=5)
                kills += 1
                live.append(await start_worker(TARGET, "--ack-wait", "1"))
                _close_gate(gate, False)

        killer = asyncio.create_task(chaos())
        try:
            done = await asyncio.wait_for(results, 600)
        finally:
            killer.cancel()
            await asyncio.gather(killer, return_exceptions=True)
        assert done == [path.name] * runs, "every run completed"
        ids = {h.run_id for h in handlers}
    lines = _lines(path)
    per_step = Counter((run, step) for _, run, step in lines)
    assert set(per_step) == {(r, s) for r in ids for s in STEPS}, "every step of every run wrote"
    assert all(n == 1 for n in per_step.values()), "a step's line appears twice"
    assert len(lines) == 3 * runs
    # The de-duplication rests on every execution of a step on one trigger seeing the same
    # ctx.idempotency_key: each execution's key must be the key of the line that was written.
    written = {(run, step): key for key, run, step in lines}
    executions = _lines(Path(f"{path}.executions"))
    assert Counter((run, step) for _, run, step in executions).keys() == per_step.keys()
    wrong = [(key, run, step) for key, run, step in executions if written[(run, step)] != key]
    assert wrong == [], "an execution had another idempotency key than the one that wrote"
    return kills, len(executions) - len(lines)


async def test_crash_loop_short(
    nats_url: str, start_worker: Callable[..., Awaitable[WorkerProcess]], tmp_path: Path
) -> None:
    """30 runs; a worker is SIGKILLed twice, each time once 20 more lines have been written (the
    steps pause at a gate during each kill, so both kills land while runs are in flight)."""
    path = tmp_path / "lines.txt"
    state = {"kills": 0, "mark": 0}

    async def kill(live: list[WorkerProcess], path: Path) -> bool:
        if state["kills"] == 2:
            return False
        target = state["mark"] + 20

        async def progressed() -> bool:
            return len(_lines(path)) >= target

        await eventually(progressed, timeout=60, what=f"{target} lines written")
        state["kills"] += 1
        state["mark"] = target
        return True

    kills, repeats = await _crash_loop(nats_url, start_worker, path, runs=30, kill=kill, gate=tmp_path / "gate")
    assert kills == 2
    assert repeats > 0, "no step ran again after a kill: the de-duplication went untested"


async def test_crash_loop_200_runs(
    nats_url: str, start_worker: Callable[..., Awaitable[WorkerProcess]], tmp_path: Path
) -> None:
    """200 runs with steps of 0.5 s (about 30 s in all); a worker is SIGKILLed every 2 seconds
    and restarted until every run has ended."""
    path = tmp_path / "lines.txt"

    async def kill(live: list[WorkerProcess], path: Path) -> bool:
        await asyncio.sleep(2.0)  # the chaos schedule, not a synchronisation
        return True

    kills, repeats = await _crash_loop(nats_url, start_worker, path, runs=200, kill=kill, hold=0.5)
    assert kills >= 3 and repeats > 0
