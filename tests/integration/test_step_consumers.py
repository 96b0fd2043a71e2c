"""A step's durable consumers on JetStream, of one filter subject each: one per accepted event
type and one for its commands (``cmd.<step>``); and the move from a step consumer that had several
filters (an older jetloom's): what it acknowledged is not delivered again."""

from __future__ import annotations

import asyncio

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from engine.jetstream.log import JetStreamLog, commands_consumer_name, consumer_name
from engine.model.records import OutMessage
from engine.wire.subjects import run_subject
from services.natsserver import EmbeddedNats
from tests.integration.procs import eventually

WF = "Consumed"


def msg(log: JetStreamLog, run: str, kind: str, type_name: str, data: bytes) -> OutMessage:
    return OutMessage(run_subject(log.prefix, WF, run, kind, type_name), data, {})  # type: ignore[arg-type]


async def take(log: JetStreamLog, step: str, n: int, *, commands: bool, event_type: str | None = None) -> list[bytes]:
    got: list[bytes] = []

    async def run() -> None:
        async for d in log.consume(WF, step, max_in_flight=4, commands=commands, event_type=event_type):
            got.append(d.record.data)
            await d.ack()
            if len(got) == n:
                return

    await asyncio.wait_for(run(), 10)
    return got


async def old_consumer_took_two(log: JetStreamLog, step: str, filters: list[str], first: list[tuple[str, str, bytes]]) -> list[bytes]:
    """An older jetloom's consumer of ``step`` with every one of ``filters`` (kind.type), fed
    ``first`` (kind, type, payload) on run r1; it takes and acknowledges two of them (the server
    has taken both acks in before this returns: it does so on the consumer's own time)."""
    await log.js.add_consumer(
        log.stream,
        ConsumerConfig(
            durable_name=consumer_name(WF, step),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=-1,
            filter_subjects=[f"{log.prefix}.run.{WF}.*.{f}" for f in filters],
        ),
    )
    for kind, type_name, data in first:
        await log.append([msg(log, "r1", kind, type_name, data)])
    got = await take(log, step, 2, commands=False)

    async def acknowledged() -> bool:
        info = await log.js.consumer_info(log.stream, consumer_name(WF, step))
        return info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= 2

    await eventually(acknowledged, 10, "two deliveries acknowledged")
    return got


async def test_a_step_with_one_event_type_has_consumers_of_one_filter_each(js_log: JetStreamLog) -> None:
    await js_log.ensure_consumer(WF, "s", ["A"])
    events = (await js_log.js.consumer_info(js_log.stream, consumer_name(WF, "s"))).config
    commands = (await js_log.js.consumer_info(js_log.stream, commands_consumer_name(WF, "s"))).config
    assert events.filter_subject == f"{js_log.prefix}.run.{WF}.*.evt.A" and not events.filter_subjects
    assert commands.filter_subject == f"{js_log.prefix}.run.{WF}.*.cmd.s" and not commands.filter_subjects
    await js_log.ensure_consumer(WF, "t", ["B", "A"])  # several types: a consumer for each
    main = (await js_log.js.consumer_info(js_log.stream, consumer_name(WF, "t"))).config
    other = (await js_log.js.consumer_info(js_log.stream, consumer_name(WF, "t", "B"))).config
    assert main.filter_subject == f"{js_log.prefix}.run.{WF}.*.evt.A" and not main.filter_subjects
    assert other.filter_subject == f"{js_log.prefix}.run.{WF}.*.evt.B" and not other.filter_subjects
    assert consumer_name(WF, "t", "B") == f"{WF}--t--evt--B"


async def test_a_step_consumer_of_several_types_is_split_after_what_it_acknowledged(js_log: JetStreamLog) -> None:
    first = [("evt", "B", b"b1"), ("evt", "A", b"a1"), ("evt", "B", b"b2")]
    assert await old_consumer_took_two(js_log, "m", ["evt.A", "evt.B"], first) == [b"b1", b"a1"]
    await js_log.ensure_consumer(WF, "m", ["A", "B"])  # as a worker of this version starts
    await js_log.append([msg(js_log, "r2", "evt", "B", b"b3"), msg(js_log, "r2", "evt", "A", b"a2")])
    assert await take(js_log, "m", 2, commands=False, event_type="B") == [b"b2", b"b3"]  # b1 was acknowledged
    got = await take(js_log, "m", 1, commands=False)  # the main consumer keeps A (it may hand
    if got == [b"b2"]:  # out b2 once more: delivered by it before, not acknowledged)
        got = await take(js_log, "m", 1, commands=False)
    assert got == [b"a2"]
    main = (await js_log.js.consumer_info(js_log.stream, consumer_name(WF, "m"))).config
    assert main.filter_subject == f"{js_log.prefix}.run.{WF}.*.evt.A" and not main.filter_subjects


async def test_commands_a_step_consumer_of_both_filters_acknowledged_are_not_delivered_again(
    js_log: JetStreamLog, nats_server: EmbeddedNats
) -> None:
    first = [("cmd", "s", b"c1"), ("evt", "A", b"e1"), ("cmd", "s", b"c2")]
    assert await old_consumer_took_two(js_log, "s", ["evt.A", "cmd.s"], first) == [b"c1", b"e1"]

    await js_log.ensure_consumer(WF, "s", ["A"])  # as a worker of this version starts
    await js_log.append([msg(js_log, "r2", "cmd", "s", b"c3"), msg(js_log, "r2", "evt", "A", b"e2")])
    assert await take(js_log, "s", 2, commands=True) == [b"c2", b"c3"]  # c1 was acknowledged
    # The events consumer may hand out c2 once more: the old consumer had delivered it (the pull
    # asks for more than it keeps) and not acknowledged it. A command handled twice is skipped
    # the second time (at least once; the executor checks the run's js_log).
    got = await take(js_log, "s", 1, commands=False)
    if got == [b"c2"]:
        got = await take(js_log, "s", 1, commands=False)
    assert got == [b"e2"]
    events = (await js_log.js.consumer_info(js_log.stream, consumer_name(WF, "s"))).config
    assert events.filter_subject == f"{js_log.prefix}.run.{WF}.*.evt.A" and not events.filter_subjects

    # A worker starting later (a log of its own) updates both consumers; the commands consumer
    # keeps its start, which the server would refuse to change.
    start = (await js_log.js.consumer_info(js_log.stream, commands_consumer_name(WF, "s"))).config.opt_start_seq
    later = await JetStreamLog.connect(nats_server.url)
    try:
        await later.ensure_consumer(WF, "s", ["A"])
    finally:
        await later.close()
    after = (await js_log.js.consumer_info(js_log.stream, commands_consumer_name(WF, "s"))).config
    assert after.opt_start_seq == start and after.filter_subject == f"{js_log.prefix}.run.{WF}.*.cmd.s"
