"""jetloom's benchmark harness (issue 5): every figure measured in one run beside its baselines.

Baselines, on the same NATS server in the same invocation:

- **limit** (``benchmarks.limit``): the workflows hand-written on nats-py, no engine — the floor;
- **peer** (``benchmarks.peer``): llama-index-workflows 2.26 in-process, no durability.

Scenarios (``benchmarks.scenarios``): (a) chain latency, (b) chain throughput, (c) fan-out/fan-in,
(d) rebuild from the log, (e) scale-out over worker processes, (f) the docindex example,
(g) (a)+(b) with ``sync_interval: always``, (u) (a)+(b) with the other event loop.

Run ``python -m benchmarks --help`` (or ``make bench``); from Python::

    from benchmarks import Options, run_benchmarks, write_results
    doc = run_benchmarks(Options.quick_sizes(scenarios=["a"]))
    write_results(doc, Path("out"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .harness import Options
    from .runner import run_benchmarks, write_results
else:

    def __getattr__(name: str) -> Any:
        """The names below on first use: a worker process that imports ``benchmarks.workflows``
        does not load the harness (rich, the scenarios)."""
        module = {"Options": ".harness", "run_benchmarks": ".runner", "write_results": ".runner"}.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, __name__), name)


__all__ = ["Options", "run_benchmarks", "write_results"]
