"""The continuous pull loop (``pull.PullLoop``) with its messages taken straight from the
protocol parser: pull requests that expire come back as 408 statuses whose pending counts return
the unused part of the request, so the loop keeps asking and a message appended after several
expiries is still delivered."""

from __future__ import annotations

import asyncio

from engine.jetstream.log import JetStreamLog, consumer_name
from engine.jetstream.pull import PullLoop as _Pull
from engine.model.records import OutMessage
from engine.wire.subjects import run_subject
from tests.integration.procs import eventually

WF = "Pulled"



class _Recording(_Pull):
    statuses: list[str]

    def _on_status(self, status: str, headers: dict[str, str]) -> None:
        self.statuses.append(status)
        super()._on_status(status, headers)


async def test_expired_pull_requests_are_renewed_and_deliveries_come_through_the_tap(fast_js_log: JetStreamLog) -> None:
    await fast_js_log.ensure_consumer(WF, "s", ["Tick"])
    pull = _Recording(
        fast_js_log.nc,
        f"$JS.API.CONSUMER.MSG.NEXT.{fast_js_log.stream}.{consumer_name(WF, 's')}",
        max_in_flight=2,
        prefetch=2,
        expires=0.3,
        heartbeat=0.1,
        ack_wait=5.0,
        tap=fast_js_log._read_tap(),
        outbox=fast_js_log.outbox,
    )
    pull.statuses = []
    assert pull.tap is not None
    got: list[int] = []

    async def take() -> None:
        async for d in pull.run():
            got.append(d.record.seq)
            assert d.record.headers.get("Jl-Run") == "r"
            await d.ack()

    task = asyncio.create_task(take())
    try:

        async def expired_twice() -> bool:
            return pull.statuses.count("408") >= 2

        await eventually(expired_twice, timeout=10, what="two pull requests expired")
        assert pull.outstanding <= pull.limit
        result = await fast_js_log.append(
            [OutMessage(run_subject(fast_js_log.prefix, WF, "r", "evt", "Tick"), b"{}", {"Jl-Run": "r"})]
        )

        async def delivered() -> bool:
            return got == [result.last_seq]

        await eventually(delivered, timeout=10, what="the message appended after the expiries")
        assert "100" in pull.statuses  # idle heartbeats parsed from the raw status lines
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
