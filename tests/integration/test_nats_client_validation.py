"""``NatsClient.start`` checks the workflow's step graph before it appends anything, as
``Workflow.run()`` does in-process: an invalid workflow raises at once instead of waiting on workers
that refuse it (on a real nats-server)."""

from __future__ import annotations

import pytest

from engine import (
    Event,
    NoLiveWorkerWarning,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowValidationError,
    step,
)
from services.nats_client import NatsClient


class Orphan(Event):
    pass


class Unconsumed(Workflow):
    """Defines fine; its graph is invalid: ``Orphan`` is produced and never accepted."""

    @step
    async def begin(self, ev: StartEvent) -> Orphan | StopEvent:
        return StopEvent(result="never")


class Later(Event):
    pass


class Completed(Workflow):
    """Invalid until a free step accepting ``Later`` is added."""

    @step
    async def begin(self, ev: StartEvent) -> Later | StopEvent:
        return StopEvent(result="ok")


async def test_start_refuses_an_invalid_graph_before_appending(nats_url: str) -> None:
    async with await NatsClient.connect(nats_url) as client:
        with pytest.raises(WorkflowValidationError, match="step 'begin' produces Orphan but no step accepts it"):
            await client.start(Unconsumed, run_id="bad-1", timeout=5)
        assert await client.log.read(Unconsumed.workflow_name, "bad-1") == []

        with pytest.raises(WorkflowValidationError, match="produces Later"):
            await client.start(Completed, run_id="later-1", timeout=5)

        @step(workflow=Completed)
        async def take(ev: Later) -> StopEvent:
            return StopEvent(result="later")

        with pytest.warns(NoLiveWorkerWarning, match="later-2"):  # (valid now; no worker serves it)
            handler = await client.start(Completed, run_id="later-2", timeout=5)
        await handler.cancel_run()
        with pytest.raises(WorkflowCancelledError):
            await handler
