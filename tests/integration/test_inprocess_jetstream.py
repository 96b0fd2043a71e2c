"""In-process runs on a JetStream log (durable, single process), and the `jetloom nats` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path

import nats

from engine import StepFailedError, fold
from engine.jetstream.log import JetStreamLog
from engine.wire.codec import decode_record
from tests.integration.procs import ROOT, eventually
from tests.workflows import Chain3, FanInOut


async def test_workflow_runs_in_process_on_jetstream(nats_url: str) -> None:
    log = await JetStreamLog.connect(nats_url)
    try:
        assert await Chain3(timeout=30, log=log).run(text="a b") == {"n": 2, "source": "a b"}
        handler = FanInOut(timeout=60, log=log).run(n=12)
        assert await handler == [i * i for i in range(12)]
        st = fold(decode_record(r, FanInOut.events) for r in await log.read("FanInOut", handler.run_id))
        assert st.status == "completed"
        assert sum(step == "square" for _, step in st.done) == 12
    finally:
        await log.close()


async def test_step_failure_is_logged_with_traceback(nats_url: str) -> None:
    log = await JetStreamLog.connect(nats_url)
    try:
        handler = Chain3(timeout=30, log=log).run(nope="no text field")
        try:
            await handler
        except StepFailedError as err:
            assert err.step == "parse"
            assert "AttributeError" in err.error_type and "text" in err.error_message
        else:
            raise AssertionError("the run should have failed")
        st = fold(decode_record(r) for r in await log.read("Chain3", handler.run_id))
        assert st.status == "failed" and "Traceback" in st.error.traceback  # type: ignore[union-attr]
    finally:
        await log.close()


async def test_jetloom_nats_command_prints_a_working_url(tmp_path: object) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "nats", "--port", "0", "--store-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("nats://127.0.0.1:")
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="T", subjects=["t"])
            assert (await js.publish("t", b"x")).seq == 1  # JetStream stores
            assert (await js.account_info()).streams == 1
        finally:
            await nc.close()
        assert any(p.name == "T" for p in tmp_path.rglob("T")), "the stream lives in --store-dir"
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


async def test_runs_commit_as_atomic_batches_with_commit_batch(nats_url: str) -> None:
    """``JetStreamLog(commit="batch")`` in normal use: runs complete, every commit is stored whole
    and contiguous (one atomic batch), with neither a copy of its messages in its head nor an
    execution id in ``Jl-Commit``, and the fold sees no orphans and nothing incomplete."""
    from engine.model.records import StepCompleted
    from engine.wire.headers import H_COMMIT, parse_commit_tag

    log = await JetStreamLog.connect(nats_url, commit="batch")
    try:
        assert log.atomic
        assert await Chain3(timeout=30, log=log).run(text="a b") == {"n": 2, "source": "a b"}
        handler = FanInOut(timeout=60, log=log).run(n=20)
        assert await handler == [i * i for i in range(20)]
        raws = await log.read("FanInOut", handler.run_id)
        records = [decode_record(r, FanInOut.events) for r in raws]
        st = fold(records)
        assert st.status == "completed" and st.orphans == set() and st.incomplete == {}
        commits: dict[str, list[tuple[int, int]]] = {}
        for raw in raws:
            tag = parse_commit_tag(raw.headers[H_COMMIT]) if H_COMMIT in raw.headers else None
            if tag is not None:
                key, index, execution = tag
                assert execution is None, raw.headers[H_COMMIT]
                commits.setdefault(key, []).append((index, raw.seq))
        (split,) = [k for k in commits if k.endswith(":split")]
        assert [i for i, _ in commits[split]] == list(range(21))  # the head and the 20 Items
        for parts in commits.values():  # each commit whole, in order, nothing between its messages
            seqs = [seq for _, seq in parts]
            assert [i for i, _ in parts] == list(range(len(parts)))
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        heads = [r.body for r in records if isinstance(r.body, StepCompleted)]
        assert heads and all(not h.messages for h in heads)  # no copies: nothing to repair
    finally:
        await log.close()


async def test_commit_over_the_servers_batch_limit_fails_the_step_clearly(tmp_path: Path) -> None:
    from services.natsserver import EmbeddedNats

    # A server with the default limit of 1,000 messages per atomic batch (no nats.conf).
    async with EmbeddedNats(port=0, store_dir=tmp_path / "nats", config=None) as server:
        log = await JetStreamLog.connect(server.url, commit="batch")
        try:
            handler = FanInOut(timeout=60, log=log).run(n=1000)  # 1,000 events + the completion
            try:
                await handler
            except StepFailedError as err:
                assert err.step == "split"
                assert "CommitTooLargeError" in err.error_type and "max_msgs" in err.error_message
            else:
                raise AssertionError("the split step should have failed")
        finally:
            await log.close()


async def test_commit_over_the_servers_max_payload_fails_the_step_clearly(tmp_path: Path) -> None:
    from services.natsserver import EmbeddedNats

    # Default max_payload (1 MB, no nats.conf): the completion record carries a copy of all
    # 20,000 emitted events (~40 bytes each), which does not fit.
    async with EmbeddedNats(port=0, store_dir=tmp_path / "nats", config=None) as server:
        log = await JetStreamLog.connect(server.url)
        try:
            handler = FanInOut(timeout=60, log=log).run(n=20_000)
            try:
                await handler
            except StepFailedError as err:
                assert err.step == "split"
                assert "CommitTooLargeError" in err.error_type and "max_payload" in err.error_message
            else:
                raise AssertionError("the split step should have failed")
            records = await log.read("FanInOut", handler.run_id)
            assert [r.subject.rsplit(".", 1)[1] for r in records] == [
                "RunStarted", "StartEvent", "StepFailed"
            ]  # nothing of the oversized commit was stored
        finally:
            await log.close()


async def test_an_awaited_handler_follows_sys_records_and_a_late_stream_the_rest(nats_url: str) -> None:
    """A handler only awaited takes its run's sys records through the workflow's sys follow
    consumer (one filter, ``*.sys.>``); ``stream_events`` called after the end follows every
    kind on its own and streams what the steps wrote."""
    from engine import StopEvent
    from tests.workflows import Progress

    log = await JetStreamLog.connect(nats_url)
    try:
        handler = Chain3(timeout=30, log=log).run(text="a b c")
        assert await handler == {"n": 3, "source": "a b c"}

        # the executor's own watch of run ends (EventLog.follow_type), one consumer per type
        ends = {f"{log.prefix}.run.Chain3.*.sys.{t}" for t in ("RunCancelled", "RunFailed")}

        async def consumer_filters() -> set[str | None]:
            infos = await log.js.consumers_info(log.stream)
            return {c.config.filter_subject for c in infos if not (c.name or "").startswith("Chain3--")}

        async def follow_filters() -> set[str | None]:  # the handler's follow consumers
            found = await consumer_filters()
            assert ends <= found
            return found - ends

        # (the executor sets its end watches up in the background: a short run can end first)
        await eventually(lambda: _contains(consumer_filters(), ends), what="the executor's end watches")
        assert await follow_filters() == {f"{log.prefix}.run.Chain3.*.sys.>"}
        streamed = [ev async for ev in handler.stream_events()]
        assert streamed == [Progress(stage="parsed"), Progress(stage="counted"), StopEvent(result={"n": 3, "source": "a b c"})]
        assert await follow_filters() == {f"{log.prefix}.run.Chain3.*.sys.>", f"{log.prefix}.run.Chain3.>"}
    finally:
        await log.close()


async def test_a_step_of_two_event_types_takes_both_through_its_two_consumers(nats_url: str) -> None:
    from tests.workflows import TwoKinds

    log = await JetStreamLog.connect(nats_url)
    try:
        result = await TwoKinds(timeout=30, log=log).run(n=4)
        assert result == sorted([0, 1, 2, 3, 0, 10, 20, 30])
        names = {c.name for c in await log.js.consumers_info(log.stream)}
        assert {"TwoKinds--join", "TwoKinds--join--evt--Right", "TwoKinds--join--cmd"} <= names
    finally:
        await log.close()


async def test_a_new_runs_handler_follows_it_by_callback_to_every_kind_of_end(nats_url: str) -> None:
    """A run started under a new id is followed by ``follow_callback``: it resolves on its end,
    on its timeout (the ``RunFailed`` the timer appends) and on a cancel sent before its follow
    began, and it leaves no follower behind in the log's follow hub."""
    import asyncio

    import pytest

    from engine import WorkflowCancelledError, WorkflowTimeoutError
    from tests.workflows import Approval, Gate

    log = await JetStreamLog.connect(nats_url)
    try:
        assert await Chain3(timeout=30, log=log).run(text="a b") == {"n": 2, "source": "a b"}
        waiting = Gate(timeout=0.5, log=log).run()
        with pytest.raises(WorkflowTimeoutError):
            await waiting
        st = fold(decode_record(r) for r in await log.read("Gate", waiting.run_id))
        assert st.status == "failed" and st.error is not None and st.error.error_type == "WorkflowTimeoutError"
        cancelled = Gate(timeout=30, log=log).run()
        await cancelled.cancel_run("at once")  # (before the handler's follow began)
        with pytest.raises(WorkflowCancelledError):
            await cancelled
        approved = Gate(timeout=30, log=log).run()
        async with asyncio.timeout(10):
            while not await log.read("Gate", approved.run_id):  # (its start commit has landed)
                await asyncio.sleep(0.01)
        assert approved._take in log._hubs[("Gate", "sys")].followers[approved.run_id]
        await approved.send_event(Approval(approved=True, by="me"))
        assert await approved == {"approved": True, "by": "me"}
        assert all(not hub.followers for hub in log._hubs.values())
    finally:
        await log.close()


async def test_a_follow_hub_left_without_followers_is_dropped_and_its_consumer_deleted(nats_url: str) -> None:
    """A process that no longer follows any run of a workflow stops receiving its records: once
    its follow hub has had no follower for the idle time, the hub is dropped and its consumer
    deleted; a later follow makes a new hub, which delivers."""
    log = await JetStreamLog.connect(nats_url)
    log.follows.idle_s = 0.3
    every_kind = f"{log.prefix}.run.Chain3.>"

    async def hub_consumers() -> int:
        infos = await log.js.consumers_info(log.stream)
        return sum(1 for c in infos if c.config.filter_subject == every_kind)

    try:
        seen: list[int] = []
        unfollow = await log.follow_callback("Chain3", "nobody", lambda rec: seen.append(rec.seq))
        assert ("Chain3", None) in log.follows.hubs and await hub_consumers() == 1
        unfollow()

        async def dropped() -> bool:
            return ("Chain3", None) not in log.follows.hubs and await hub_consumers() == 0

        await eventually(dropped, timeout=15, what="the idle hub is dropped and its consumer deleted")

        # a follow after the drop: a new hub and consumer that deliver the run's records
        run_id = "after-drop"
        got: list[str] = []
        unfollow = await log.follow_callback("Chain3", run_id, lambda rec: got.append(rec.subject.rsplit(".", 2)[1]))
        assert await hub_consumers() == 1
        assert await Chain3(timeout=30, log=log).run(run_id=run_id, text="a b") == {"n": 2, "source": "a b"}

        async def delivered() -> bool:
            return "sys" in got and "evt" in got

        await eventually(delivered, what="the new hub delivers the run's records")
        unfollow()
        await eventually(dropped, timeout=15, what="the second hub is dropped too")
        assert seen == []  # (no record of run "nobody" exists)
    finally:
        await log.close()


async def _contains(found: Awaitable[set[str | None]], wanted: set[str]) -> bool:
    return wanted <= await found
