"""Run the peers' comparison: every engine in every round (the engines alternating, so the
machine's drift hits them alike), then jetloom's fsyncs at sync always, then the files."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..harness import Harness, Options, machine_info
from ..measure import failure
from . import PY_PINS
from .dbos import DbosPostgres, DbosSqlite
from .engine import Engine, Sizes
from .install import peers_python
from .jetloom import Jetloom
from .restate import Restate
from .results import figures, markdown, result_paths, summarize, verdicts
from .temporal import Temporal

__all__ = ["run_peers", "write"]

FSYNC_RUNS = 100
FSYNC_PROBES = 200


def engines(h: Harness, only: list[str] | None = None) -> list[Engine]:
    """Every engine, in the order each round measures them (``only``: those keys)."""
    every: list[Engine] = [
        Jetloom(h, sync_always=False), Jetloom(h, sync_always=True), Restate(), DbosPostgres(), DbosSqlite(), Temporal(),
    ]  # fmt: skip
    return [e for e in every if only is None or e.key in only]


def _peer_packages() -> dict[str, str]:
    names = [p.split("==")[0].split("[")[0] for p in PY_PINS]
    code = f"import importlib.metadata as m, json; print(json.dumps({{n: m.version(n) for n in {names!r}}}))"
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = subprocess.run([str(peers_python()), "-c", code], capture_output=True, text=True, timeout=60)
        return dict(json.loads(out.stdout))
    return {}


def _fsync_probe(directory: Path, n: int) -> list[float]:
    """Milliseconds of ``n`` 4 KiB appends each followed by ``fsync``, in ``directory``."""
    path = directory / "fsync-probe"
    out: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = os.urandom(4096)
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            out.append((time.perf_counter() - t0) * 1e3)
    finally:
        os.close(fd)
        path.unlink()
    return sorted(out)


def _strace_fsyncs(pid: int, out_file: Path) -> subprocess.Popen[str]:
    """strace counting the fsync/fdatasync calls of every thread of ``pid`` and the wall time
    spent in them (``-w``); only those calls stop the tracee (``--seccomp-bpf``)."""
    cmd = ["strace", "-f", "--seccomp-bpf", "-c", "-w", "-e", "trace=fsync,fdatasync", "-o", str(out_file)]
    for task in Path(f"/proc/{pid}/task").iterdir():
        cmd += ["-p", task.name]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)


def _strace_totals(out_file: Path) -> tuple[int, float]:
    """(calls, wall seconds) of fsync and fdatasync in an ``strace -c -w`` summary."""
    calls, seconds = 0, 0.0
    for line in out_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync"):
            seconds += float(parts[1])
            calls += int(parts[3])
    return calls, seconds


def measure_fsyncs(h: Harness, sync: Jetloom, tmp: Path, runs: int, inflight: int) -> dict[str, Any]:
    """How many fsyncs nats-server makes per run at sync always and the wall time it spends in
    them (strace on every thread of the server), one run at a time and ``inflight`` at once; and
    what one 4 KiB write + fsync costs on this disk. strace slows the server, so these runs are
    apart from the figures."""
    pid = sync.server_pid()
    out: dict[str, Any] = {}
    with sync.rig(tmp) as rig:
        rig.measure(runs=20, inflight=1, warmup=0)  # (warm, before strace slows the server)
        for kind, n, k in (("sequential", runs, 1), ("inflight", runs * 5, inflight)):
            out_file = tmp / f"strace-{kind}.txt"
            tracer = _strace_fsyncs(pid, out_file)
            time.sleep(1.0)  # strace attaches to each thread; there is no readiness signal to wait on
            got = rig.measure(runs=n, inflight=k, warmup=0)
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
            calls, seconds = _strace_totals(out_file)
            # (ChainRig warms up with warmup_runs(n) runs inside the traced window: count them)
            traced = n + max(3, min(50, n // 10))
            out[kind] = {
                "inflight": k, "runs": traced, "fsyncs_per_run": calls / traced,
                "fsync_wall_ms_per_run": seconds / traced * 1e3,
                "runs_per_s_traced": got["completed"] / got["wall_s"],
            }  # fmt: skip
    probes = _fsync_probe(h.server(sync_always=True).store_dir, FSYNC_PROBES)
    out.update(
        fsyncs_per_run=out["sequential"]["fsyncs_per_run"],
        fsync_ms_p50=statistics.median(probes), fsync_ms_p90=probes[int(0.9 * (len(probes) - 1))], probes=len(probes),
    )  # fmt: skip
    return out


def run_peers(
    *, rounds: int, inflight: int, scale: float, only: list[str] | None, fsyncs: bool,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """Measure every engine ``rounds`` times (sizes × ``scale``), alternating by round; the
    results document (``results``' shape, before its file names are chosen)."""
    t_start = time.monotonic()
    tmp_root = Path(tempfile.mkdtemp(prefix="jetloom-peers-"))
    tmp_root.chmod(0o755)  # (Postgres runs as its own user under it)
    doc: dict[str, Any] = {
        "kind": "peers",
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "options": {"rounds": rounds, "inflight": inflight, "scale": scale},
        "machine": machine_info(),
        "peer_packages": _peer_packages(),
        "engines": {},
    }
    try:
        with Harness(Options(), console=None) as h:
            todo = engines(h, only)
            for e in todo:
                sizes = Sizes(max(3, int(e.sizes.sequential * scale)), max(inflight, int(e.sizes.inflight * scale)))
                doc["engines"][e.key] = {
                    "title": e.title, "durability": e.durability, "processes": e.processes,
                    "sizes": {"sequential": sizes.sequential, "inflight": sizes.inflight}, "rounds": [],
                }  # fmt: skip
                try:
                    doc["engines"][e.key]["versions"] = e.versions()
                except Exception as exc:  # noqa: BLE001 - reported in the results
                    doc["engines"][e.key]["versions"] = {"error": failure(exc)["error"]}
            for i in range(rounds):
                for e in todo:
                    entry = doc["engines"][e.key]
                    seq, inf = entry["sizes"]["sequential"], entry["sizes"]["inflight"]
                    tmp = tmp_root / f"{e.key}-{i}"
                    tmp.mkdir()
                    got: dict[str, Any] = {}
                    say(f"round {i + 1}/{rounds}: {e.title}")
                    try:
                        with e.rig(tmp) as rig:
                            got["sequential"] = figures(_try(rig.measure, runs=seq, inflight=1, warmup=max(3, seq // 10)), 1)
                            got["inflight"] = figures(
                                _try(rig.measure, runs=inf, inflight=inflight, warmup=min(inflight, inf // 10)), inflight
                            )
                    except Exception as exc:  # noqa: BLE001 - one engine failing is a result
                        err = failure(exc)
                        got.setdefault("sequential", err)
                        got.setdefault("inflight", err)
                    entry["rounds"].append(got)
                    say("  " + ", ".join(f"{k}: " + (v.get("error", "")[:300] or
                        f"p50 {v['p50_ms']:.1f} ms, {v['runs_per_s']:.0f} runs/s, {v['cpu_ms_per_run_total']:.2f} ms CPU/run")
                        for k, v in got.items()))  # fmt: skip
            sync = next((e for e in todo if isinstance(e, Jetloom) and e.sync_always), None)
            if fsyncs and sync is not None:
                say("fsyncs of jetloom at sync always (strace)")
                fs_tmp = tmp_root / "fsync"
                fs_tmp.mkdir()
                doc["fsync"] = _try(measure_fsyncs, h, sync, fs_tmp, max(10, int(FSYNC_RUNS * scale)), inflight)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    for entry in doc["engines"].values():
        entry["summary"] = summarize(entry["rounds"])
    doc["verdicts"] = verdicts(doc)
    doc["wall_s"] = time.monotonic() - t_start
    return doc


def _try(fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported in the results
        return failure(exc)


def write(doc: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``doc`` as today's next ``peers-<date>[-runN].json`` and ``.md``; the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, run = result_paths(out_dir, doc["date"])
    doc["run_of_day"] = doc["runs_of_day"] = run
    json_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(markdown(doc), encoding="utf-8")
    return json_path, md_path
