"""Rendezvous hashing and ``RunAffinity`` (``engine.runtime.affinity``) over a registry view."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import msgspec
import pytest

from engine.memory.registry import MemoryRegistry
from engine.ports.registry import ServiceEntry, WorkflowInfo
from engine.runtime.affinity import RunAffinity, rendezvous_owner

MEMBERS = [f"m{i:02d}" for i in range(5)]
RUNS = [f"run-{i}" for i in range(10_000)]


def test_owner_is_one_of_the_members_and_none_without_members() -> None:
    assert rendezvous_owner("r", []) is None
    assert rendezvous_owner("r", ["only"]) == "only"
    assert all(rendezvous_owner(r, MEMBERS) in MEMBERS for r in RUNS[:100])


def test_owner_does_not_depend_on_member_order_or_duplicates() -> None:
    for r in RUNS[:200]:
        owner = rendezvous_owner(r, MEMBERS)
        assert rendezvous_owner(r, list(reversed(MEMBERS))) == owner
        assert rendezvous_owner(r, MEMBERS + MEMBERS[:2]) == owner


def test_owner_is_the_same_in_processes_of_other_hash_seeds() -> None:
    code = (
        "from engine.runtime.affinity import rendezvous_owner as o;"
        f"print(','.join(o(f'run-{{i}}', {MEMBERS!r}) for i in range(50)))"
    )
    here = ",".join(rendezvous_owner(r, MEMBERS) or "" for r in RUNS[:50])
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == here


def test_runs_are_balanced_over_members() -> None:
    counts = Counter(rendezvous_owner(r, MEMBERS) for r in RUNS)
    share = len(RUNS) / len(MEMBERS)
    assert set(counts) == set(MEMBERS)
    assert all(abs(c - share) / share < 0.05 for c in counts.values()), counts


def test_removing_a_member_moves_only_its_runs() -> None:
    before = {r: rendezvous_owner(r, MEMBERS) for r in RUNS}
    gone = MEMBERS[2]
    after = {r: rendezvous_owner(r, [m for m in MEMBERS if m != gone]) for r in RUNS}
    moved = [r for r in RUNS if before[r] != after[r]]
    assert moved and all(before[r] == gone for r in moved)
    assert len(moved) == sum(o == gone for o in before.values())
    # ...and they spread over the others, not onto one
    assert set(after[r] for r in moved) == set(MEMBERS) - {gone}


def test_adding_a_member_takes_runs_from_every_other_only() -> None:
    before = {r: rendezvous_owner(r, MEMBERS) for r in RUNS}
    after = {r: rendezvous_owner(r, [*MEMBERS, "new"]) for r in RUNS}
    moved = [r for r in RUNS if before[r] != after[r]]
    assert all(after[r] == "new" for r in moved)
    assert abs(len(moved) - len(RUNS) / 6) / (len(RUNS) / 6) < 0.1
    assert set(before[r] for r in moved) == set(MEMBERS)


def _entry(instance: str, *, workflow: str = "wf", handoff: list[str] | None = None) -> ServiceEntry:
    info = WorkflowInfo(name=workflow, class_path="m:W", start_event="StartEvent", stop_events=[], steps=[], events={}, graph=[])
    return ServiceEntry(
        service=workflow,
        instance=instance,
        host="h",
        pid=1,
        version="0",
        workflows=[info],
        started_at="",
        handoff_steps=handoff if handoff is not None else ["a", "b"],
    )


async def test_run_affinity_follows_registry_membership() -> None:
    registry = MemoryRegistry()
    view = await registry.view()
    me = RunAffinity(view, "wf", "i1")
    assert me.owner("r", "a") is None and me.is_mine("r", "a")
    assert me.router("a").route("r", "subj") is None  # nobody takes hand-offs: handled here

    await registry.put_service(_entry("i1"))
    await registry.put_service(_entry("i2"))
    await registry.put_service(_entry("i3", handoff=["b"]))  # not step a
    await registry.put_service(_entry("x9", workflow="other"))  # another workflow
    assert me.members("a") == ("i1", "i2")
    assert me.members("b") == ("i1", "i2", "i3")
    for r in RUNS[:300]:
        owner = rendezvous_owner(r, ["i1", "i2"])
        assert me.owner(r, "a") == owner
        assert me.is_mine(r, "a") == (owner == "i1")
        assert me.router("a").route(r, "subj") == (None if owner == "i1" else owner)

    gen = registry.generation
    await registry.put_service(_entry("i2"))  # a heartbeat: same membership
    assert registry.generation == gen
    await registry.remove_service(_entry("i2"))
    assert registry.generation == gen + 1
    assert me.members("a") == ("i1",)
    assert all(me.is_mine(r, "a") for r in RUNS[:100])


def test_entries_written_before_run_affinity_decode_with_no_handoff_steps() -> None:
    old = msgspec.json.encode(_entry("i1"))
    raw = msgspec.json.decode(old)
    del raw["handoff_steps"]
    entry = msgspec.json.decode(msgspec.json.encode(raw), type=ServiceEntry)
    assert entry.handoff_steps == []


@pytest.mark.parametrize("n", [2, 4])
def test_run_ids_as_jetloom_makes_them_balance(n: int) -> None:
    from engine.runtime.inprocess import new_run_id

    members = [f"{i:012x}" for i in range(n)]
    counts = Counter(rendezvous_owner(new_run_id(), members) for _ in range(10_000))
    assert all(abs(c - 10_000 / n) / (10_000 / n) < 0.05 for c in counts.values()), counts
