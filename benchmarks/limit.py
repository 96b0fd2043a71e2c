"""The **limit** baseline: the chain and fan workflows hand-written on nats-py, with no engine.

The floor for any engine on this stack: each step is a durable pull consumer read by a continuous
pull loop (pull requests refilled as deliveries settle, not ``fetch(batch=1)``); a delivery's
handler publishes the next event to the stream with ``await js.publish`` (the stored ack) and then
acks the trigger. No idempotency keys, no fold, no log reads: what it skips is what an engine adds.

Subjects (stream ``BENCH_LIMIT`` on ``limit.>``, file storage)::

    limit.chain.<run>.start → parse → limit.chain.<run>.parsed → count → .counted → finish → .done
    limit.fan.<run>.start → split → n × .item → square → n × .squared → join → .done

The worker side (``serve``) runs in its own process (``python -m benchmarks.worker limit``) so its
CPU time is measured apart from the driver's; the driver side is ``LimitClient``, which publishes
the start event and waits for the run's ``done`` message on a core subscription. The fan-in count
of ``join`` lives in the worker's memory: fine for a floor, not durable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from .workflows import STEP_CONCURRENCY

__all__ = ["LIMIT_STREAM", "LimitClient", "PullLoop", "ensure_limit_stream", "serve"]

LIMIT_STREAM = "BENCH_LIMIT"
_EXPIRES_NS = 30 * 1_000_000_000  # a pull request lives 30 s, then the server answers 408


async def ensure_limit_stream(js: JetStreamContext) -> None:
    """Create the ``BENCH_LIMIT`` stream (file storage, ``limit.>``) if it does not exist."""
    try:
        await js.stream_info(LIMIT_STREAM)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(name=LIMIT_STREAM, subjects=["limit.>"], storage=StorageType.FILE)
        )


class PullLoop:
    """A continuous pull loop over one durable consumer.

    Keeps up to ``window`` deliveries asked for or being handled; each delivery is handled in its
    own task, and settling one refills the window (in half-window steps, so pull requests stay
    few). The server's 408/409 status messages return the unused part of a request.

    Args:
        nc: a connected client.
        stream / durable: the consumer.
        handle: coroutine run per delivery (it must ack).
        window: deliveries in flight at most (default ``STEP_CONCURRENCY``).
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        durable: str,
        handle: Callable[[Msg], Awaitable[None]],
        window: int = STEP_CONCURRENCY,
    ) -> None:
        self.nc = nc
        self.api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.handle = handle
        self.window = window
        self.asked = 0
        self.held = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.inbox = self.nc.new_inbox()
        self.sub = await self.nc.subscribe(self.inbox, cb=self._on_msg)
        await self._refill()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()
        for t in list(self.tasks):
            t.cancel()

    async def _refill(self) -> None:
        want = self.window - self.held - self.asked
        if want <= 0 or (self.asked and want < self.window // 2):
            return
        self.asked += want
        body = orjson.dumps({"batch": want, "expires": _EXPIRES_NS})
        await self.nc.publish(self.api, body, reply=self.inbox)

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers
        if headers and not msg.data and "Status" in headers:
            if headers["Status"] == "100":
                return
            pending = headers.get("Nats-Pending-Messages")
            self.asked = max(0, self.asked - int(pending)) if pending else 0
            await self._refill()
            return
        self.asked = max(0, self.asked - 1)
        self.held += 1
        task = asyncio.create_task(self._run(msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, msg: Msg) -> None:
        try:
            await self.handle(msg)
        finally:
            self.held -= 1
            await self._refill()


def _next(subject: str, last: str) -> str:
    return subject.rsplit(".", 1)[0] + "." + last


class _Steps:
    """The six hand-written steps."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.fan_sum: dict[str, int] = defaultdict(int)
        self.fan_seen: dict[str, int] = defaultdict(int)

    async def parse(self, msg: Msg) -> None:
        words = orjson.loads(msg.data)["text"].split()
        await self.js.publish(_next(msg.subject, "parsed"), orjson.dumps({"words": words}))
        await msg.ack()

    async def count(self, msg: Msg) -> None:
        n = len(orjson.loads(msg.data)["words"])
        await self.js.publish(_next(msg.subject, "counted"), orjson.dumps({"n": n}))
        await msg.ack()

    async def finish(self, msg: Msg) -> None:
        n = orjson.loads(msg.data)["n"]
        await self.js.publish(_next(msg.subject, "done"), orjson.dumps({"result": n}))
        await msg.ack()

    async def split(self, msg: Msg) -> None:
        n = orjson.loads(msg.data)["n"]
        subject = _next(msg.subject, "item")
        acks = [
            await self.js.publish_async(subject, orjson.dumps({"i": i, "n": n})) for i in range(n)
        ]
        await asyncio.gather(*acks)
        await msg.ack()

    async def square(self, msg: Msg) -> None:
        ev = orjson.loads(msg.data)
        body = orjson.dumps({"i": ev["i"], "square": ev["i"] * ev["i"], "n": ev["n"]})
        await self.js.publish(_next(msg.subject, "squared"), body)
        await msg.ack()

    async def join(self, msg: Msg) -> None:
        ev = orjson.loads(msg.data)
        run = msg.subject.split(".")[2]
        self.fan_sum[run] += ev["square"]
        self.fan_seen[run] += 1
        if self.fan_seen[run] == ev["n"]:
            total = self.fan_sum.pop(run)
            del self.fan_seen[run]
            await self.js.publish(_next(msg.subject, "done"), orjson.dumps({"result": total}))
        await msg.ack()


# (workflow, step, subject it consumes)
_CONSUMERS = [
    ("chain", "parse", "start"),
    ("chain", "count", "parsed"),
    ("chain", "finish", "counted"),
    ("fan", "split", "start"),
    ("fan", "square", "item"),
    ("fan", "join", "squared"),
]


async def serve(url: str, stop: asyncio.Event, *, ready: Callable[[], None] | None = None) -> None:
    """Run the six step consumers against ``url`` until ``stop`` is set; call ``ready`` once
    consuming."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_limit_stream(js)
    steps = _Steps(js)
    loops: list[PullLoop] = []
    for wf, name, token in _CONSUMERS:
        durable = f"limit_{wf}_{name}"
        await js.add_consumer(
            LIMIT_STREAM,
            ConsumerConfig(
                durable_name=durable,
                filter_subject=f"limit.{wf}.*.{token}",
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=20_000,
                ack_wait=30,
            ),
        )
        loop = PullLoop(nc, LIMIT_STREAM, durable, getattr(steps, name))
        await loop.start()
        loops.append(loop)
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        for loop in loops:
            await loop.stop()
        await nc.drain()


class LimitClient:
    """The driver side: start a run by publishing its start event, learn its result from the
    ``done`` message (core subscription on ``limit.*.*.done``).

    Create with ``await LimitClient.connect(url)``; ``close()`` when done.
    """

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self._waiting: dict[str, asyncio.Future[Any]] = {}

    @classmethod
    async def connect(cls, url: str) -> LimitClient:
        client = cls(await nats.connect(url))
        await ensure_limit_stream(client.js)
        await client.nc.subscribe("limit.*.*.done", cb=client._on_done)
        return client

    async def _on_done(self, msg: Msg) -> None:
        fut = self._waiting.pop(msg.subject.split(".")[2], None)
        if fut is not None and not fut.done():
            fut.set_result(orjson.loads(msg.data)["result"])

    async def _run(self, workflow: str, run_id: str, body: dict[str, Any], timeout: float) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self._waiting[run_id] = fut
        try:
            await self.js.publish(f"limit.{workflow}.{run_id}.start", orjson.dumps(body))
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._waiting.pop(run_id, None)

    async def run_chain(self, run_id: str, text: str, *, timeout: float = 120.0) -> Any:
        """Run the chain once; returns the word count."""
        return await self._run("chain", run_id, {"text": text}, timeout)

    async def run_fan(self, run_id: str, n: int, *, timeout: float = 300.0) -> Any:
        """Run the fan once over ``n`` items; returns the sum of squares."""
        return await self._run("fan", run_id, {"n": n}, timeout)

    async def close(self) -> None:
        await self.nc.drain()
