"""One benchmark invocation: run the chosen scenarios on shared servers, evaluate the targets and
write ``<out>/<date>.json``, ``<out>/<date>.md`` and ``<out>/<date>-*.png``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from .harness import Harness, Options, machine_info
from .scenarios import SCENARIOS
from .targets import evaluate

__all__ = ["SHARED_MACHINE_NOTE", "day_runs", "next_run", "run_benchmarks", "write_results"]

SHARED_MACHINE_NOTE = (
    "Measured on a small virtual machine shared with other work (its steal time is below); "
    "compare the ratios between systems of one run, not absolute figures across runs."
)


def run_benchmarks(options: Options, console: Console | None = None) -> dict[str, Any]:
    """Run ``options.scenarios`` and return the whole result document (see docs/benchmarks.md).

    Raises:
        ValueError: an unknown scenario key.
    """
    unknown = [s for s in options.scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}")
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    times0 = psutil.cpu_times()
    doc: dict[str, Any] = {
        "schema": 1,
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "note": SHARED_MACHINE_NOTE,
        "options": options.as_json(),
        "scenarios": {},
    }
    with Harness(options, console) as h:
        doc["uvloop"] = h.uvloop
        for key in options.scenarios:
            if key == "g" and not options.sync_always:
                doc["scenarios"][key] = {"title": SCENARIOS[key][0], "skipped": "--no-sync-always"}
                continue
            title, fn = SCENARIOS[key]
            s0 = time.perf_counter()
            try:
                figures = fn(h)
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not lose the rest
                figures = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            doc["scenarios"][key] = {"title": title, **figures, "seconds": time.perf_counter() - s0}
    doc["duration_s"] = time.perf_counter() - t0
    doc["machine"]["steal"] = steal_fraction(times0, psutil.cpu_times())
    doc["targets"] = evaluate(doc)
    return doc


def steal_fraction(before: Any, after: Any) -> float | None:
    """The share of the machine's CPU time between two ``psutil.cpu_times()`` readings that the
    hypervisor gave to other guests (Linux "steal"); ``None`` where the kernel does not report it.
    A large share means the host was oversubscribed: wall figures then move between runs, and
    cores look idle while they were taken away."""
    if not hasattr(before, "steal"):
        return None
    total = sum(after) - sum(before)
    return (after.steal - before.steal) / total if total > 0 else 0.0


_RUN_FILE = re.compile(r"^(?P<day>.+?)(?:-run(?P<n>[1-9][0-9]*))?\.json$")


def day_runs(names: Iterable[str], day: str) -> list[int]:
    """The run numbers of the result files of ``day`` among file ``names``, sorted:
    ``<day>-run<N>.json`` is run N, a bare ``<day>.json`` (written before results were
    numbered) run 1. ``day`` is the file stem without the number (``2026-12-04``, or
    ``2026-12-04-quick`` for quick runs, which are counted apart)."""
    found = set()
    for name in names:
        m = _RUN_FILE.match(name)
        if m and m["day"] == day:
            found.add(int(m["n"] or 1))
    return sorted(found)


def next_run(names: Iterable[str], day: str) -> int:
    """The number of the next result file of ``day`` among ``names`` (``day_runs``): one more
    than the highest, 1 for the first."""
    return max(day_runs(names, day), default=0) + 1


def write_results(doc: dict[str, Any], out: Path, stem: str | None = None) -> dict[str, Path]:
    """Write the JSON, the Markdown report and the plots; returns their paths by kind.

    The files are numbered per day: ``<date>-run<N>.json`` / ``.md`` / ``-*.png``, N the next
    number in ``out`` (``next_run``); ``doc["run_of_day"]`` (``{"date", "run", "of"}``) says
    which run of that day it is, of how many then in ``out``. ``stem`` (``--render``: the
    saved file's) keeps a saved result's file names; its number is then read from the name (a
    bare ``<date>.json`` is run 1) and ``of`` is counted again."""
    from .report import render_markdown, render_plots

    out.mkdir(parents=True, exist_ok=True)
    day = datetime.fromisoformat(doc["started_at"]).strftime("%Y-%m-%d")
    if doc["options"].get("quick"):
        day += "-quick"
    names = [p.name for p in out.glob("*.json")]
    if stem is not None:
        run = (day_runs([f"{stem}.json"], day) or [1])[0]
    else:
        run = next_run(names, day)
        stem = f"{day}-run{run}"
    doc["run_of_day"] = {"date": day, "run": run, "of": max([run, *day_runs(names, day)])}
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    pngs = render_plots(doc, out, stem)
    paths["markdown"].write_text(render_markdown(doc, pngs), encoding="utf-8")
    paths.update({f"png:{p.stem}": p for p in pngs})
    return paths
