"""``python -m benchmarks``: run the benchmark scenarios and write JSON, Markdown and PNG results.

Examples::

    python -m benchmarks                       # everything, full sizes (make bench)
    python -m benchmarks --quick --out /tmp/b  # tiny sizes: a smoke run of every scenario
    python -m benchmarks -s a,b --runs 500     # only (a) and (b)
    python -m benchmarks --render benchmarks/results/2026-11-21.json   # re-render a result
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .harness import Options
from .procs import ROOT
from .scenarios import SCENARIOS

DEFAULT_OUT = ROOT / "benchmarks" / "results"

app = typer.Typer(add_completion=False, help=__doc__)


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def _print_targets(console: Console, doc: dict) -> None:
    from .targets import format_spread

    run = doc.get("run_of_day")
    title = "targets (ratios from this run"
    title += f"; run {run['run']} of {run['of']} on {run['date']})" if run else ")"
    table = Table(title=title)
    for col in ("target", "measured (median)", "spread (per-round ratios)", "bound", "verdict"):
        table.add_column(col)
    for t in doc["targets"]:
        if t["verdict"] == "miss":
            verdict = f"[red]miss ({t['off_by']:,.2f}× off)[/]"
        else:
            verdict = {"pass": "[green]pass[/]"}.get(t["verdict"], t["verdict"])
        measured = "—" if t["measured"] is None else f"{t['measured']:.3f}"
        table.add_row(t["what"], measured, format_spread(t), f"{t['op']} {t['target']:g}", verdict)
    console.print(table)


@app.command()
def main(
    scenarios: Annotated[
        str,
        typer.Option("--scenarios", "-s", help=f"Comma-separated keys of {', '.join(SCENARIOS)}."),
    ] = ",".join(SCENARIOS),
    quick: Annotated[
        bool, typer.Option(help="Tiny sizes: a smoke run (figures mean nothing).")
    ] = False,
    runs: Annotated[int | None, typer.Option(help="Runs per latency measurement (a).")] = None,
    throughput_runs: Annotated[
        int | None, typer.Option(help="Runs per throughput measurement (b, e, g).")
    ] = None,
    inflight: Annotated[int | None, typer.Option(help="Runs in flight in (b), (e), (g).")] = None,
    saturation: Annotated[
        int | None, typer.Option(help="Runs in flight when saturated (b, g).")
    ] = None,
    fan_n: Annotated[int | None, typer.Option(help="Events fanned out and in by (c).")] = None,
    rebuild_sizes: Annotated[
        str | None, typer.Option(help="Log sizes of (d), e.g. 100,1000.")
    ] = None,
    scale_workers: Annotated[
        str | None, typer.Option(help="Worker counts of (e), e.g. 1,2,4.")
    ] = None,
    docindex_root: Annotated[str | None, typer.Option(help="Directory (f) indexes.")] = None,
    rounds: Annotated[
        int | None,
        typer.Option(help="Alternating rounds of the systems compared in (a), (b), (h) (default 5)."),
    ] = None,
    memory_runs: Annotated[
        int | None, typer.Option(help="Runs through the control plane while (m) reads RSS (default 10,000).")
    ] = None,
    retained_runs: Annotated[
        int | None,
        typer.Option(help="After (b), add this many finished runs to the streams and measure (b) again."),
    ] = None,
    sync_always: Annotated[
        bool,
        typer.Option(
            "--sync-always/--no-sync-always", help="Run (g) on a sync_interval: always server."
        ),
    ] = True,
    uvloop: Annotated[
        bool,
        typer.Option(
            "--uvloop/--no-uvloop",
            help="Use uvloop where installed (scenario u measures the other).",
        ),
    ] = True,
    out: Annotated[Path, typer.Option(help="Directory for the results.")] = DEFAULT_OUT,
    progress: Annotated[bool, typer.Option(help="Show a progress display on stderr.")] = True,
    render: Annotated[
        Path | None,
        typer.Option(help="Only re-render the Markdown and PNGs of a saved JSON result."),
    ] = None,
) -> None:
    """Run the scenarios of issue 5 with their baselines and write the results."""
    from .runner import run_benchmarks, write_results
    from .targets import evaluate

    console = Console(stderr=True)
    if render is not None:
        doc = json.loads(render.read_text(encoding="utf-8"))
        doc["targets"] = evaluate(doc)  # the verdicts and explanations of this harness's version
        paths = write_results(doc, render.parent, stem=render.stem)
        console.print(f"rendered {paths['markdown']}")
        return
    keys = [k.strip() for k in scenarios.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        raise typer.BadParameter(
            f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}"
        )
    opts = Options.quick_sizes() if quick else Options()
    opts.scenarios, opts.sync_always, opts.uvloop, opts.out = keys, sync_always, uvloop, out
    for name, value in (("runs", runs), ("throughput_runs", throughput_runs), ("inflight", inflight),
                        ("saturation", saturation), ("fan_n", fan_n), ("docindex_root", docindex_root),
                        ("retained_runs", retained_runs), ("rounds", rounds),
                        ("memory_runs", memory_runs)):  # fmt: skip
        if value is not None:
            setattr(opts, name, value)
    if rebuild_sizes:
        opts.rebuild_sizes = _ints(rebuild_sizes)
    if scale_workers:
        opts.scale_workers = _ints(scale_workers)
    doc = run_benchmarks(opts, console if progress else None)
    paths = write_results(doc, opts.out)
    _print_targets(console, doc)
    for kind, path in paths.items():
        if not kind.startswith("png:"):
            console.print(f"{kind}: {path}")
    console.print(f"plots: {len([k for k in paths if k.startswith('png:')])} PNGs in {opts.out}")


if __name__ == "__main__":
    app()
