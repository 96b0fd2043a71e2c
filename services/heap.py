"""The cyclic garbage collector of a long-running process (``jetloom worker``, ``jetloom
control-plane``): off while it starts, then set up for the rest of its life. Only the standard
library's public ``gc`` API."""

from __future__ import annotations

import gc

__all__ = ["GC_GEN0_THRESHOLD", "collect_after_start", "settle_heap"]


def collect_after_start() -> None:
    """Turn the cyclic garbage collector off until the process is ready (a process command calls
    this first, before it imports what it runs). Start-up allocates mostly what lives as long as
    the process, and each collection meanwhile walks all of it again (docs/benchmarks.md,
    "Start-up", has what that costs). The command turns it back on once ready (``settle_heap``)."""
    gc.disable()


#: The generation-0 threshold a worker sets (CPython's default is 700): the collector runs a
#: young collection once allocations of tracked objects outnumber deallocations by this many. A
#: worker keeps the events of the runs it holds, so at CPython's default it collects every few
#: dozen transitions and promotes the cached runs' objects into the older generations, whose
#: collections then walk them again.
GC_GEN0_THRESHOLD = 10_000


def settle_heap() -> None:
    """Set the cyclic collector up for a long-running process, once it is started.

    Moves everything alive (modules, workflow classes, pydantic schemas, the connection) to the
    permanent generation with ``gc.freeze()``, so that later collections walk only what the
    process allocated since; raises the generation-0 threshold to ``GC_GEN0_THRESHOLD``, keeping
    CPython's thresholds of the older generations; and turns the collector on (``jetloom worker``
    and ``jetloom control-plane`` keep it off while they start: ``services.cli``). It does not
    collect first: a full collection here walks the whole start-up heap (tens of thousands of
    objects; docs/benchmarks.md, "Start-up", has its cost) to free the start's own cyclic garbage
    (a few thousand objects), which stays, frozen, for the process's life instead. ``gc.disable()``
    early and ``gc.freeze()`` once set up is how the ``gc`` module is meant to be used by a
    server that forks its workers; here there is no fork, only the long life. Garbage made
    later, cycles included, is collected. Process-wide: a worker or control plane process calls
    it, the in-process runtime (which runs in its caller's process) does not.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
    gc.enable()
