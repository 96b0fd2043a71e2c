"""``services.heap.settle_heap``: the collector settings a worker takes once it is started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.heap import GC_GEN0_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Undo ``settle_heap`` after the test: the rest of the session keeps CPython's defaults."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class _Node:
    def __init__(self) -> None:
        self.peer: _Node | None = None


def test_start_up_objects_are_frozen_and_young_collections_come_later(restored_gc: None) -> None:
    before = _Node()
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD > 700  # CPython's default is 700
    # what lived at start-up is now in the permanent generation, out of every collection's walk
    assert all(obj is not before for obj in gc.get_objects())


def test_garbage_made_after_start_up_is_still_collected(restored_gc: None) -> None:
    settle_heap()
    a, b = _Node(), _Node()
    a.peer, b.peer = b, a  # a cycle only the cyclic collector frees
    del a, b
    assert gc.collect() >= 2
