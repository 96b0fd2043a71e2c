"""What every engine module provides to the runner: ``Engine`` (name, durability, sizes, a rig per
round) and ``Rig`` (one measurement)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Engine", "Rig", "Sizes"]


@dataclass(frozen=True)
class Sizes:
    """Runs measured per round: ``sequential`` one at a time, ``inflight`` at the in-flight level
    (sized so that each takes seconds, not minutes, on the slowest engine)."""

    sequential: int
    inflight: int


class Rig(Protocol):
    def measure(self, *, runs: int, inflight: int, warmup: int) -> dict[str, Any]:
        """``runs`` runs, ``inflight`` at once, after ``warmup`` unmeasured ones:
        ``{"latencies_s", "completed", "wall_s", "cpu_s": {group: seconds}}`` with groups
        ``server``, ``worker`` and ``driver`` where the engine has them."""
        ...


class Engine(Protocol):
    #: Key in the results, e.g. ``"restate"``.
    key: str
    #: Shown in tables, e.g. ``"Restate 1.7.12"``.
    title: str
    #: What the engine does before it acknowledges a step's record.
    durability: str
    #: Where its processes are: ``{group: description}``.
    processes: dict[str, str]
    sizes: Sizes

    def versions(self) -> dict[str, str]: ...

    def rig(self, tmp: Path) -> contextlib.AbstractContextManager[Rig]: ...

