"""The scenarios of issue 5, one module each; ``SCENARIOS`` maps a key to ``(title, run)``.

``run(harness) -> dict`` returns the scenario's figures (always with a ``results`` key, or
``skipped`` with the reason).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..harness import Harness
from . import (
    docindex,
    fanout,
    fastpath,
    http,
    latency,
    memory,
    rebuild,
    recovery,
    replicated,
    scaleout,
    startup,
    sync_always,
    throughput,
    uvloop,
)

__all__ = ["SCENARIOS"]

SCENARIOS: dict[str, tuple[str, Callable[[Harness], dict[str, Any]]]] = {
    "a": (latency.TITLE, latency.run),
    "b": (throughput.TITLE, throughput.run),
    "c": (fanout.TITLE, fanout.run),
    "d": (rebuild.TITLE, rebuild.run),
    "e": (scaleout.TITLE, scaleout.run),
    "f": (docindex.TITLE, docindex.run),
    "g": (sync_always.TITLE, sync_always.run),
    "u": (uvloop.TITLE, uvloop.run),
    "p": (fastpath.TITLE, fastpath.run),
    "r": (replicated.TITLE, replicated.run),
    "k": (recovery.TITLE, recovery.run),
    "s": (startup.TITLE, startup.run),
    "h": (http.TITLE, http.run),
    "m": (memory.TITLE, memory.run),
}
