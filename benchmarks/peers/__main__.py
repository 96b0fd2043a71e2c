"""``python -m benchmarks.peers``: the 3-step chain on jetloom and its durable peers (``make
bench-peers``).

Examples::

    python -m benchmarks.peers install                   # the peers' venv, npm prefix, postgresql
    python -m benchmarks.peers run                       # every engine, 5 rounds, 100 in flight
    python -m benchmarks.peers run --rounds 1 --scale 0.1 --out /tmp/p   # a quick look
    python -m benchmarks.peers render benchmarks/results/peers-2026-12-04.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..procs import ROOT

app = typer.Typer(add_completion=False, help=__doc__)
DEFAULT_OUT = ROOT / "benchmarks" / "results"


@app.command()
def install() -> None:
    """Install the peers where missing (``.peers/venv``, ``.peers/npm``, Debian's postgresql)."""
    from .install import install as do_install

    do_install()


@app.command()
def run(
    rounds: Annotated[int, typer.Option(help="Rounds; each measures every engine in turn.")] = 5,
    inflight: Annotated[int, typer.Option(help="Runs in flight for the throughput figures.")] = 100,
    scale: Annotated[float, typer.Option(help="Multiply every engine's runs per round by this.")] = 1.0,
    only: Annotated[str | None, typer.Option(help="Comma-separated engine keys, e.g. jetloom,restate.")] = None,
    fsyncs: Annotated[bool, typer.Option(help="Count jetloom's fsyncs at sync always (strace).")] = True,
    out: Annotated[Path, typer.Option(help="Directory for the results.")] = DEFAULT_OUT,
) -> None:
    """Measure every engine and write ``peers-<date>[-runN].json`` and ``.md`` to ``out``."""
    from .runner import run_peers, write

    keys = [k.strip() for k in only.split(",")] if only else None
    doc = run_peers(rounds=rounds, inflight=inflight, scale=scale, only=keys, fsyncs=fsyncs,
                    say=lambda s: typer.echo(s, err=True))  # fmt: skip
    json_path, md_path = write(doc, out)
    for v in doc["verdicts"]:
        typer.echo(f"{v['verdict']:>4}  {v['what']}: {v['measured']}")
    typer.echo(f"{json_path}\n{md_path}")


@app.command()
def render(path: Path) -> None:
    """Rewrite the Markdown of a saved results file (verdicts recomputed)."""
    from .results import load, markdown

    doc = load(path)
    path.with_suffix(".md").write_text(markdown(doc), encoding="utf-8")
    typer.echo(str(path.with_suffix(".md")))


if __name__ == "__main__":
    app()
