"""The chain on Temporal: a workflow that runs the three steps as activities, in a worker
process; the driver starts each run with ``execute_workflow`` and awaits its result.

Roles: ``serve --url HOST:PORT`` (the worker), ``drive --url HOST:PORT ...``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from drive import CHAIN_TEXT, count, drive, finish, options, parse

QUEUE = "chain"
TIMEOUT = timedelta(seconds=60)


@activity.defn(name="parse")
async def parse_activity(text: str) -> list[str]:
    return parse(text)


@activity.defn(name="count")
async def count_activity(words: list[str]) -> int:
    return count(words)


@activity.defn(name="finish")
async def finish_activity(n: int) -> int:
    return finish(n)


@workflow.defn(name="Chain")
class Chain:
    @workflow.run
    async def run(self, text: str) -> int:
        words = await workflow.execute_activity(parse_activity, text, start_to_close_timeout=TIMEOUT)
        n = await workflow.execute_activity(count_activity, words, start_to_close_timeout=TIMEOUT)
        return await workflow.execute_activity(finish_activity, n, start_to_close_timeout=TIMEOUT)


def main(role: str, args: list[str]) -> None:
    url, runs, inflight, warmup = options(args)

    async def serve() -> None:
        client = await Client.connect(url)
        worker = Worker(
            client,
            task_queue=QUEUE,
            workflows=[Chain],
            activities=[parse_activity, count_activity, finish_activity],
        )
        print("serving", flush=True)
        await worker.run()

    async def go() -> None:
        client = await Client.connect(url)

        async def one(i: int) -> int:
            return await client.execute_workflow(
                Chain.run, CHAIN_TEXT, id=f"chain-{uuid.uuid4().hex}", task_queue=QUEUE
            )

        await drive(one, runs=runs, inflight=inflight, warmup=warmup)

    asyncio.run(serve() if role == "serve" else go())
