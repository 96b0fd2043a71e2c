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

from .harness import Options
from .runner import run_benchmarks, write_results

__all__ = ["Options", "run_benchmarks", "write_results"]
