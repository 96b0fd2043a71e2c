"""Resources (``Annotated[T, Resource(factory)]``) injected into steps, in-process, as
llama-index-workflows does; some programs run on both and their outputs are compared."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel
from workflows import Workflow as RefWorkflow
from workflows import step as ref_step
from workflows.events import Event as RefEvent
from workflows.events import StartEvent as RefStart
from workflows.events import StopEvent as RefStop
from workflows.resource import Resource as RefResource

from engine import (
    Context,
    Event,
    Resource,
    ResourceConfig,
    ResourceDefinition,
    ResourceDescriptor,
    ResourceManager,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowValidationError,
    step,
)


class Counter:
    """A factory whose every call makes a new numbered object."""

    def __init__(self) -> None:
        self.calls = 0

    def make(self) -> dict[str, int]:
        self.calls += 1
        return {"n": self.calls}


class Mid(Event):
    pass


def lifetimes(workflow_cls: type, start: type, stop: type, step_fn: Any, resource: Any, mid: type) -> Any:
    """The same program for both libraries: a cached and an uncached resource, asked for twice by
    one step call (directly and through a factory) and again by a second step."""
    cached, fresh = Counter(), Counter()

    def cached_make() -> dict[str, int]:
        return cached.make()

    def fresh_make() -> dict[str, int]:
        return fresh.make()

    def wraps(inner: Annotated[dict, resource(fresh_make, cache=False)]) -> tuple[str, int]:
        return ("wraps", inner["n"])

    class Flow(workflow_cls):  # type: ignore[misc,valid-type]
        @step_fn
        async def first(
            self,
            ev: start,  # type: ignore[valid-type]
            c: Annotated[dict, resource(cached_make)],
            f: Annotated[dict, resource(fresh_make, cache=False)],
            w: Annotated[tuple, resource(wraps, cache=False)],
        ) -> mid:  # type: ignore[valid-type]
            seen.append(("first", c["n"], f["n"], w))
            return mid()

        @step_fn
        async def second(
            self,
            ev: mid,  # type: ignore[valid-type]
            c: Annotated[dict, resource(cached_make)],
            f: Annotated[dict, resource(fresh_make, cache=False)],
        ) -> stop:  # type: ignore[valid-type]
            seen.append(("second", c["n"], f["n"]))
            return stop(result=len(seen))

    seen: list[Any] = []

    async def go() -> list[Any]:
        wf = Flow()
        await wf.run()
        await wf.run()
        await Flow().run()  # another instance: another resource manager
        return seen

    return go


class RefMid(RefEvent):
    pass


async def test_resource_lifetimes_match_the_reference() -> None:
    ours = await lifetimes(Workflow, StartEvent, StopEvent, step, Resource, Mid)()
    ref = await lifetimes(RefWorkflow, RefStart, RefStop, ref_step, RefResource, RefMid)()
    assert ours == ref
    # cached: once per workflow instance; uncached: once per step call, shared within it
    assert ours[:2] == [("first", 1, 1, ("wraps", 1)), ("second", 1, 2)]
    assert ours[4] == ("first", 2, 5, ("wraps", 5))


class Conn:
    def __init__(self, url: str) -> None:
        self.url = url
        self.queries: list[str] = []


made: list[str] = []


async def make_url() -> str:
    await asyncio.sleep(0)
    return "db://x"


async def make_conn(url: Annotated[str, Resource(make_url)]) -> Conn:
    made.append(url)
    await asyncio.sleep(0.01)  # (concurrent steps ask for it meanwhile)
    return Conn(url)


class Query(Event):
    q: str


class Answer(Event):
    q: str
    conn: int


class Pooled(Workflow):
    @step
    async def fan(self, ctx: Context, ev: StartEvent) -> Query | None:
        for i in range(6):
            ctx.send_event(Query(q=f"q{i}"))
        return None

    @step(num_workers=6)
    async def ask(self, ev: Query, conn: Annotated[Conn, Resource(make_conn)]) -> Answer:
        conn.queries.append(ev.q)
        return Answer(q=ev.q, conn=id(conn))

    @step
    async def join(self, ctx: Context, ev: Answer) -> StopEvent | None:
        got = ctx.collect_events(ev, [Answer] * 6)
        if got is None:
            return None
        return StopEvent(result=sorted({a.conn for a in got}))


async def test_async_factory_with_a_dependency_is_made_once_for_concurrent_steps() -> None:
    made.clear()
    wf = Pooled()
    conns = await wf.run()
    assert len(conns) == 1 and made == ["db://x"]
    conn = wf.resource_manager.get_all()["make_conn"]
    assert sorted(conn.queries) == [f"q{i}" for i in range(6)]
    assert wf.resource_manager.get_all()["make_url"] == "db://x"


class Greeting(Workflow):
    @step
    def hello(self, ev: StartEvent, conn: Annotated[Conn, Resource(make_conn)]) -> StopEvent:
        return StopEvent(result=conn.url)  # (a plain def step: resolved on the loop, called in a thread)


async def test_a_shared_manager_and_set_replace_the_factory() -> None:
    manager = ResourceManager()
    await manager.set("make_conn", Conn("db://preset"))
    made.clear()
    assert await Greeting(resource_manager=manager).run() == "db://preset"
    assert await Greeting(resource_manager=manager).run() == "db://preset"
    assert made == []


def circle_a(b: Annotated[int, Resource(lambda: 0)]) -> int:  # (its annotation is replaced below)
    return b


def circle_b(a: Annotated[int, Resource(circle_a)]) -> int:
    return a


circle_a.__annotations__["b"] = Annotated[int, Resource(circle_b)]


class Circular(Workflow):
    @step
    async def go(self, ev: StartEvent, a: Annotated[int, Resource(circle_a)]) -> StopEvent:
        return StopEvent(result=a)


async def test_circular_dependencies_fail_the_step_and_validation_names_them() -> None:
    wf = Circular()
    with pytest.raises(StepFailedError, match=r"circular resource dependency: circle_a -> circle_b -> circle_a"):
        await wf.run()
    with pytest.raises(WorkflowValidationError, match=r"step 'go', parameter 'a': ValueError: circular"):
        wf.validate(validate_resources=True)


def broken() -> int:
    raise RuntimeError("no credentials")


class Broken(Workflow):
    @step
    async def go(self, ev: StartEvent, x: Annotated[int, Resource(broken)]) -> StopEvent:
        return StopEvent(result=x)


async def test_a_failing_factory_fails_the_step_not_validation_by_default() -> None:
    wf = Broken()
    assert wf.validate() is False  # factories are not called unless asked
    with pytest.raises(StepFailedError, match="RuntimeError: no credentials"):
        await wf.run()
    with pytest.raises(WorkflowValidationError, match="no credentials"):
        wf.validate(validate_resources=True)  # (from a running loop: made on a thread of its own)


class Settings(BaseModel):
    categories: list[str]
    threshold: float


def config_flow(path: str, selector: str | None) -> type[Workflow]:
    class Classify(Workflow):
        @step
        async def go(
            self, ev: StartEvent, cfg: Annotated[Settings, ResourceConfig(path, path_selector=selector)]
        ) -> StopEvent:
            return StopEvent(result=cfg.model_dump())

    return Classify


async def test_resource_config_loads_a_pydantic_model_and_is_checked_at_run(tmp_path: Path) -> None:
    good = tmp_path / "cfg.json"
    good.write_text(json.dumps({"models": {"clf": {"categories": ["a", "b"], "threshold": 0.5}}}))
    result = await config_flow(str(good), "models.clf")().run()
    assert result == {"categories": ["a", "b"], "threshold": 0.5}

    with pytest.raises(WorkflowValidationError, match="no JSON object at 'models.nope'"):
        await config_flow(str(good), "models.nope")().run()
    with pytest.raises(WorkflowValidationError, match="no such file"):
        await config_flow(str(tmp_path / "missing.json"), None)().run()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"categories": "x"}))
    with pytest.raises(WorkflowValidationError, match="ValidationError"):
        await config_flow(str(bad), None)().run()
    assert config_flow(str(bad), None)().validate(validate_resource_configs=False) is False
    with pytest.raises(ValueError, match="JSON files only"):
        ResourceConfig("settings.yaml")


def test_descriptors_and_definitions() -> None:
    spec = Circular.steps["go"]
    (d,) = spec.resources
    assert isinstance(d, ResourceDefinition) and d.name == "a" and d.type_annotation is int
    assert isinstance(d.resource, ResourceDescriptor)
    assert d.resource.name == "circle_a" and d.resource.cache
    assert spec.event_param == "ev" and spec.ctx_param is None
    with pytest.raises(TypeError, match="callable"):
        Resource(42)  # type: ignore[arg-type]
