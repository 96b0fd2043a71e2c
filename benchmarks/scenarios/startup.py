"""(s) Start-up: how long ``import engine`` takes, a worker process from spawn to its ready line,
and the control plane from spawn to its first 200 on ``GET /health``, each in fresh processes.

Baselines in the same rounds: an empty interpreter (``python -c pass``, spawn to exit) and the
import of the two libraries the processes cannot start without (``import nats``,
``import litestar``): the floor. The measurements take turns within each round, so a change in
the machine's load hits them alike; the median of the rounds decides, with the spread beside it.

Imports are timed inside the child (``time.perf_counter`` around the import statement), the
processes from ``Popen`` to their line or answer. The processes are the real commands:
``python -m services.cli worker benchmarks.workflows:BenchChain --nats URL`` and
``python -m services.cli control-plane --nats URL --port P``. Before the first round the
checkout's modules are compiled to bytecode (as ``pip install`` does for an installed package),
so an environment with ``PYTHONDONTWRITEBYTECODE`` does not measure the compiler.

Where a target is missed, one more start of each process under ``python -X importtime`` says
what dominates: its import time by top-level package (each module's own time) and the rest of
its start (connecting, stream and consumer set-up, the app's build).
"""

from __future__ import annotations

import compileall
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import psutil

from services.supervisor import ChildProcess, python_env

from ..harness import Harness
from ..procs import ROOT

__all__ = ["TITLE", "markdown", "run"]

TITLE = "start-up: import engine, a worker process, the control plane"

#: Rounds of every measurement (quick: 2); at least 5 so that the median is robust.
ROUNDS = 7
READY_TIMEOUT_S = 60.0
WORKER_TARGET = "benchmarks.workflows:BenchChain"
#: The measurements: key → what it is.
MEASURES = {
    "python": "python -c pass (spawn to exit)",
    "import_nats": "import nats (in the child)",
    "import_litestar": "import litestar (in the child)",
    "import_engine": "import engine (in the child)",
    "worker": "worker: spawn to its ready line",
    "control": "control plane: spawn to its first 200 on /health",
    "worker_cpu": "worker: its CPU time (user + system) up to then",
    "control_cpu": "control plane: its CPU time (user + system) up to then",
}
_TIMED_IMPORT = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"


def _env() -> dict[str, str]:
    return python_env(ROOT)


def _python_pass() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, env=_env(), check=True)
    return time.perf_counter() - t0


def _timed_import(module: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", _TIMED_IMPORT.format(module)],
        cwd=ROOT, env=_env(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(proc.stdout.strip().splitlines()[-1])


def _worker_cmd(url: str) -> list[str]:
    return ["-m", "services.cli", "worker", WORKER_TARGET, "--nats", url]


def _control_cmd(url: str, port: int) -> list[str]:
    return ["-m", "services.cli", "control-plane", "--nats", url, "--port", str(port)]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used: less moved by the other processes of
    a busy machine than the wall time (10 ms resolution)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _worker(url: str, flags: tuple[str, ...] = ()) -> tuple[float, float, str]:
    """Seconds from spawn to the ready line, the process's CPU seconds then, and its output (for
    ``-X importtime``)."""
    child = ChildProcess(
        [sys.executable, *flags, *_worker_cmd(url)], env=_env(), cwd=ROOT, ready="jetloom worker ready",
        tail=None,
    )
    t0 = time.perf_counter()
    child.start()
    try:
        child.wait_ready(READY_TIMEOUT_S)
        return time.perf_counter() - t0, _cpu_s(child.pid), child.output()
    finally:
        child.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _control(url: str, flags: tuple[str, ...] = ()) -> tuple[float, float, str]:
    """Seconds from spawn to the first 200 on ``/health``, the process's CPU seconds then, and its
    output."""
    port = _free_port()
    child = ChildProcess([sys.executable, *flags, *_control_cmd(url, port)], env=_env(), cwd=ROOT, tail=None)
    t0 = time.perf_counter()
    child.start()
    try:
        deadline = t0 + READY_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1.0) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0, _cpu_s(child.pid), child.output()
            except OSError:
                if not child.alive:
                    raise RuntimeError(f"the control plane exited:\n{child.output()}") from None
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"no 200 on /health in {READY_TIMEOUT_S:g} s") from None
                time.sleep(0.002)  # (a poll: the figure's resolution)
    finally:
        child.stop()


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_ms": statistics.median(samples) * 1000,
        "min_ms": min(samples) * 1000,
        "max_ms": max(samples) * 1000,
        "samples_ms": [round(s * 1000, 2) for s in samples],
    }


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")


def _by_package(importtime: str, top: int = 6) -> dict[str, float]:
    """Milliseconds of import time by top-level package (the sum of its modules' own times), the
    ``top`` largest, from ``python -X importtime`` output."""
    own: Counter[str] = Counter()
    for us, module in _IMPORTTIME.findall(importtime):
        own[module.split(".")[0]] += int(us)
    return {name: round(us / 1000, 1) for name, us in own.most_common(top)}


def _dominant(measure: Callable[[tuple[str, ...]], tuple[float, float, str]]) -> dict[str, Any]:
    """One start under ``-X importtime``: its time, its import time (the sum of every module's own
    time, inflated a little by the measuring), the rest of the start, and the largest packages."""
    seconds, _, output = measure(("-X", "importtime"))
    total_ms = sum(int(us) for us, _ in _IMPORTTIME.findall(output)) / 1000
    return {
        "ready_ms": round(seconds * 1000, 1),
        "imports_ms": round(total_ms, 1),
        "rest_ms": round(seconds * 1000 - total_ms, 1),
        "top_packages_ms": _by_package(output),
    }


def run(h: Harness) -> dict[str, Any]:
    rounds = 2 if h.options.quick else ROUNDS
    url = h.server().url
    for package in ("engine", "services", "benchmarks"):
        compileall.compile_dir(ROOT / package, quiet=1)
    samples: dict[str, list[float]] = {key: [] for key in MEASURES}
    steps = {
        "python": _python_pass,
        "import_nats": lambda: _timed_import("nats"),
        "import_litestar": lambda: _timed_import("litestar"),
        "import_engine": lambda: _timed_import("engine"),
        "worker": lambda: _worker(url),
        "control": lambda: _control(url),
    }
    # one start of each, unmeasured: the streams, consumers and buckets exist from here on
    _worker(url)
    _control(url)
    with h.task(f"(s) start-up, {rounds} rounds", rounds) as advance:
        for _ in range(rounds):
            for key, step in steps.items():
                figure = step()
                if isinstance(figure, tuple):  # (a process: its wall and CPU seconds)
                    samples[key].append(figure[0])
                    samples[f"{key}_cpu"].append(figure[1])
                else:
                    samples[key].append(figure)
            advance(1)
    results = {key: {"what": MEASURES[key], **_summary(s)} for key, s in samples.items()}
    return {
        "rounds": rounds,
        "worker_target": WORKER_TARGET,
        "results": results,
        "dominant": {
            "worker": _dominant(lambda flags: _worker(url, flags)),
            "control": _dominant(lambda flags: _control(url, flags)),
        },
    }


def _fmt(m: dict[str, Any]) -> str:
    return f"{m['median_ms']:,.1f} ms ({m['min_ms']:,.1f}–{m['max_ms']:,.1f})"


def story(s: dict[str, Any], process: str) -> str:
    """What dominates a process's start (``worker`` or ``control``), from the ``-X importtime``
    start of the result: its imports by package and the rest."""
    d = s.get("dominant", {}).get(process)
    if not d:
        return ""
    top = ", ".join(f"{name} {ms:.0f}" for name, ms in d["top_packages_ms"].items())
    return (
        f"Under -X importtime it was ready in {d['ready_ms']:.0f} ms: imports {d['imports_ms']:.0f} ms "
        f"(largest, own time by package: {top} ms), the rest of the start (connect, set-up"
        f"{', the app' if process == 'control' else ''}) {d['rest_ms']:.0f} ms. Floor in this run: "
        f"python -c pass {s['results']['python']['median_ms']:.0f} ms, import nats "
        f"{s['results']['import_nats']['median_ms']:.0f} ms, import litestar "
        f"{s['results']['import_litestar']['median_ms']:.0f} ms."
    )


def markdown(s: dict[str, Any]) -> str:
    """The scenario's section of the Markdown report."""
    rows = "".join(f"| {m['what']} | {_fmt(m)} |\n" for m in s["results"].values())
    text = (
        f"\n## (s) {s['title']}\n\nMedian of {s['rounds']} alternating rounds (min–max); the worker "
        f"serves `{s['worker_target']}`.\n\n| measurement | median (spread) |\n|---|---|\n{rows}"
    )
    for process in ("worker", "control"):
        if s.get("dominant", {}).get(process):
            text += f"\n- {process}: {story(s, process)}\n"
    return text
