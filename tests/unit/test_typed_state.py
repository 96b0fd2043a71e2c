"""Typed run state (``Context[MyState]``) and the state store's methods, in-process on a
MemoryLog, with the semantics of llama-index-workflows' state store: defaults are the initial
state, ``get``/``set`` take dot paths through the model, ``get_state`` is a copy, ``edit_state``
commits on exit, ``set_state`` replaces or merges a parent model, ``clear`` resets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from engine import (
    Context,
    DictState,
    Event,
    MemoryLog,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowValidationError,
    step,
)
from engine.runtime.context import StateStore
from engine.state.fold import fold
from engine.wire.codec import decode_record


class Profile(BaseModel):
    name: str = "anon"
    tags: dict[str, int] = Field(default_factory=dict)


class Counter(BaseModel):
    count: int = 0
    items: list[str] = Field(default_factory=list)
    profile: Profile = Field(default_factory=Profile)


class MoreCounter(Counter):
    extra: str = "x"


class Tick(Event):
    n: int


class Counting(Workflow):
    @step
    async def begin(self, ctx: Context[Counter], ev: StartEvent) -> Tick:
        assert isinstance(await ctx.store.get_state(), Counter)
        async with ctx.store.edit_state() as state:
            state.count += 1
            state.items.append("begin")
        await ctx.store.set("profile.name", "ada")
        await ctx.store.set("profile.tags.k", 3)
        return Tick(n=1)

    @step
    async def finish(self, ctx: Context, ev: Tick) -> StopEvent:  # untyped here: the workflow's type
        state = await ctx.store.get_state()
        return StopEvent(
            result={
                "type": type(state).__name__,
                "count": await ctx.store.get("count"),
                "name": await ctx.store.get("profile.name"),
                "tag": await ctx.store.get("profile.tags.k"),
                "items": state.items,
                "missing": await ctx.store.get("profile.nope", default="dflt"),
            }
        )


async def test_typed_state_flows_between_steps_and_is_kept_in_the_log() -> None:
    log = MemoryLog()
    wf = Counting(log=log)
    handler = wf.run()
    result = await handler
    assert result == {
        "type": "Counter",
        "count": 1,
        "name": "ada",
        "tag": 3,
        "items": ["begin"],
        "missing": "dflt",
    }
    # the log holds the model's JSON dump, and the fold rebuilds it
    st = fold(decode_record(r) for r in await log.read("Counting", handler.run_id))
    assert Counter.model_validate(st.state) == Counter(
        count=1, items=["begin"], profile=Profile(name="ada", tags={"k": 3})
    )
    # handler.ctx reads the run's state from its log
    assert await handler.ctx.store.get("profile.tags.k") == 3
    assert (await handler.ctx.store.get_state()).count == 1


async def test_every_step_sees_the_workflow_state_type() -> None:
    assert Counting.steps["finish"].state_type is Counter
    assert Counting.steps["begin"].state_type is Counter


def test_steps_with_unrelated_state_types_are_rejected() -> None:
    class Other(BaseModel):
        x: int = 0

    class Bad(Workflow):
        @step
        async def a(self, ctx: Context[Counter], ev: StartEvent) -> Tick:
            return Tick(n=1)

        @step
        async def b(self, ctx: Context[Other], ev: Tick) -> StopEvent:
            return StopEvent()

    # (checked with the graph, at run() or validate(), as llama-index-workflows does)
    with pytest.raises(WorkflowValidationError, match="different state types"):
        Bad().validate()


def test_a_state_type_that_is_not_a_model_is_rejected() -> None:
    class Bad(Workflow):
        @step
        async def a(self, ctx: Context[int], ev: StartEvent) -> StopEvent:  # type: ignore[type-var]
            return StopEvent()

    with pytest.raises(WorkflowValidationError, match="not a pydantic model"):
        Bad().validate()


def test_the_most_derived_state_type_of_a_chain_wins() -> None:
    class Chain(Workflow):
        @step
        async def a(self, ctx: Context[Counter], ev: StartEvent) -> Tick:
            return Tick(n=1)

        @step
        async def b(self, ctx: Context[MoreCounter], ev: Tick) -> StopEvent:
            return StopEvent(result=type(await ctx.store.get_state()).__name__)

    Chain().validate()
    assert {s.state_type for s in Chain.steps.values()} == {MoreCounter}


# ---- the store on its own (a step's view) ----------------------------------------------------


def typed(base: dict[str, Any] | None = None) -> StateStore[Counter]:
    return StateStore(base if base is not None else {}, Counter)


async def test_defaults_are_the_initial_state_and_get_state_is_a_copy() -> None:
    store = typed()
    state = await store.get_state()
    assert state == Counter()
    state.count = 99
    assert await store.get("count") == 0
    assert store.changes == {}


async def test_get_raises_value_error_without_default() -> None:
    store = typed()
    with pytest.raises(ValueError, match="not found"):
        await store.get("nope")
    with pytest.raises(ValueError, match="not found"):
        await store.get("profile.nope")
    assert await store.get("nope", None) is None


async def test_set_records_the_top_level_field_as_json() -> None:
    store = typed()
    await store.set("profile", Profile(name="b"))
    assert store.changes == {"profile": {"name": "b", "tags": {}}}
    await store.set("profile.tags.a", 1)
    assert store.changes == {"profile": {"name": "b", "tags": {"a": 1}}}
    assert (await store.get_state()).profile == Profile(name="b", tags={"a": 1})


async def test_set_through_a_list_index() -> None:
    store = typed({"items": ["a", "b"]})
    await store.set("items.1", "z")
    assert await store.get("items.1") == "z"
    assert store.changes == {"items": ["a", "z"]}


async def test_set_errors() -> None:
    store = typed()
    with pytest.raises(ValueError, match="empty"):
        await store.set("", 1)
    with pytest.raises(ValueError):
        await store.set("nofield", 1)
    with pytest.raises(ValueError, match="no field"):
        await store.set("nofield.x", 1)


async def test_edit_state_commits_on_exit_only() -> None:
    store = typed()
    async with store.edit_state() as state:
        state.count = 5
        assert await store.get("count") == 0  # reads see the committed state until the block ends
        with pytest.raises(RuntimeError, match="inside edit_state"):
            await store.set("count", 1)
    assert await store.get("count") == 5
    assert store.changes == {"count": 5}

    with pytest.raises(KeyError):
        async with store.edit_state() as state:
            state.count = 7
            raise KeyError("boom")
    assert await store.get("count") == 5


async def test_set_state_replaces_or_merges_a_parent_model() -> None:
    store: StateStore[Any] = StateStore({}, MoreCounter)
    await store.set("extra", "kept")
    await store.set_state(Counter(count=4))  # a parent type: merged, extra kept
    assert await store.get_state() == MoreCounter(count=4, extra="kept")
    await store.set_state(MoreCounter(count=1))
    assert await store.get_state() == MoreCounter(count=1)

    class Other(BaseModel):
        y: int = 0

    with pytest.raises(ValueError, match="must be of type"):
        await store.set_state(Other())


async def test_clear_resets_to_defaults() -> None:
    store = typed()
    await store.set("count", 3)
    await store.clear()
    assert await store.get_state() == Counter()
    assert store.changes == {"": Counter().model_dump(mode="json")}

    class NoDefault(BaseModel):
        x: int

    with pytest.raises(ValueError, match="defaults"):
        await StateStore({}, NoDefault).clear()


# ---- untyped state -----------------------------------------------------------------------------


async def test_untyped_state_reads_as_dict_state_and_keeps_models() -> None:
    store: StateStore[DictState] = StateStore({"a": 1})
    state = await store.get_state()
    assert isinstance(state, DictState)
    assert state["a"] == 1 and state.a == 1 and "a" in state
    await store.set("doc", Profile(name="d"))
    assert store.changes["doc"]["__is_pydantic"] is True  # kept JSON-ready in the log
    assert await store.get("doc") == Profile(name="d")  # and rebuilt as its class
    async with store.edit_state() as st:
        del st["a"]
        st["b"] = 2
    assert "" in store.changes  # a removed key: the whole state is replaced
    assert dict((await store.get_state()).items()) == {"doc": Profile(name="d"), "b": 2}
    await store.clear()
    assert len(await store.get_state()) == 0


class Untyped(Workflow):
    @step
    async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("doc", Profile(name="p"))
        async with ctx.store.edit_state() as state:
            state["n"] = state.get("n", 0) + 1
        return StopEvent(result=(await ctx.store.get("doc")).name)


async def test_untyped_run_keeps_pydantic_values_in_the_log() -> None:
    wf = Untyped()
    handler = wf.run()
    assert await handler == "p"
    assert await handler.ctx.store.get("doc") == Profile(name="p")
    assert await handler.ctx.store.get("n") == 1


async def test_a_started_runs_store_is_read_only_from_outside() -> None:
    from engine import ContextStateError

    handler = Untyped().run()
    await handler
    with pytest.raises(ContextStateError):
        await handler.ctx.store.set("x", 1)


async def test_typed_state_survives_a_snapshot() -> None:
    from engine.state.snapshots import decode_snapshot, encode_snapshot

    log = MemoryLog()
    handler = Counting(log=log).run()
    await handler
    st = fold(decode_record(r) for r in await log.read("Counting", handler.run_id))
    back = decode_snapshot(encode_snapshot(st))
    assert back is not None
    assert Counter.model_validate(back.state) == Counter.model_validate(st.state)
    assert back.state == st.state


def test_a_whole_state_change_replaces_the_fold_state() -> None:
    from engine.state.fold import set_path

    state: dict[str, Any] = {"a": {"b": 1}, "c": 2}
    set_path(state, "", {"x": 1})
    assert state == {"x": 1}
