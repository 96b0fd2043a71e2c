"""The chain on DBOS: a workflow of three ``@DBOS.step`` functions, started and awaited in the
same process (DBOS is a library: the process that starts a workflow runs it, recording each step
in the system database).

Role: ``drive --url SYSTEM_DATABASE_URL ...`` (``postgresql://...`` or ``sqlite:///path``).
"""

from __future__ import annotations

import asyncio

from dbos import DBOS
from drive import CHAIN_TEXT, count, drive, finish, options, parse


@DBOS.step()
async def parse_step(text: str) -> list[str]:
    return parse(text)


@DBOS.step()
async def count_step(words: list[str]) -> int:
    return count(words)


@DBOS.step()
async def finish_step(n: int) -> int:
    return finish(n)


@DBOS.workflow()
async def chain(text: str) -> int:
    words = await parse_step(text)
    n = await count_step(words)
    return await finish_step(n)


def main(role: str, args: list[str]) -> None:
    url, runs, inflight, warmup = options(args)
    assert role == "drive", role
    DBOS(config={"name": "chain", "system_database_url": url, "log_level": "WARNING"})
    DBOS.launch()

    async def one(i: int) -> int:
        handle = await DBOS.start_workflow_async(chain, CHAIN_TEXT)
        return int(await handle.get_result())

    try:
        asyncio.run(drive(one, runs=runs, inflight=inflight, warmup=warmup))
    finally:
        DBOS.destroy()
