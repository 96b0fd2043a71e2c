"""The docindex example (examples/docindex): in-process, and on NATS with two worker processes.

The expected counts come from a plain ``ast.walk`` over a small fixed tree written here, not from the
workflow's code.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import pytest

from engine import fold
from engine.jetstream.log import JetStreamLog
from engine.model.records import StepCompleted, completed_step
from engine.wire.codec import decode_record
from engine.wire.headers import H_WORKER
from examples.docindex.store import DocRow, DocStore
from examples.docindex.workflow import DocIndex, Progress
from services.launcher import WorkerProcess
from services.nats_client import NatsClient
from services.natsserver import EmbeddedNats

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0

# ---- the corpus ---------------------------------------------------------------------------------

ALPHA = '''\
"""Alpha module: shapes and helpers."""

import functools


class Outer:
    """An outer class holding zephyrquartz values."""

    class Inner:
        """A nested class."""

        def method(self):
            """Inner method docstring."""

        async def amethod(self):
            """Inner async method docstring."""

    def undocumented(self):
        return 1

    def blank(self):
        """"""

    def spaces(self):
        """   """


async def fetch(url):
    """Fetch a resource asynchronously."""


def factory():
    """Make a closure."""

    def closure():
        """The closure's docstring."""

    class Local:
        """A class local to a function."""

    return closure, Local


@functools.lru_cache
def decorated():
    """A decorated function."""


if True:

    def conditional():
        """Defined under an if."""

try:
    pass
except Exception:

    class Fallback:
        """Defined in an except block."""


def no_doc():
    x = "not a docstring"
    return x
'''

PKG_INIT = '"""The pkg package."""\n'

BETA = '''\
class Empty:
    ""


def parse_widget(text):
    """Parse a widget description into a Widget object."""
'''

LATIN1 = b'# -*- coding: latin-1 -*-\n"""Caf\xe9 cr\xe8me module."""\n\n\ndef f():\n    """Returns caf\xe9."""\n'

CORPUS: dict[str, bytes] = {
    "pkg/__init__.py": PKG_INIT.encode(),
    "pkg/alpha.py": ALPHA.encode(),
    "pkg/beta.py": BETA.encode(),
    "pkg/sub/__init__.py": b"",
    "tools/latin.py": LATIN1,
    "top.py": b'"""Top-level module."""\n',
    # parses, but too deep for a recursive walk in Python
    "pkg/deep_ok.py": b'def total():\n    """Sum many ones."""\n    return '
    + b"1 + " * 2000
    + b"1\n",
    # skipped: do not parse or decode
    "broken/syntax_error.py": b'"""Looks fine."""\n\ndef oops(:\n    pass\n',
    "broken/undecodable.py": b"\xff\xfe invalid\n",
    "broken/mismatch.py": b'# -*- coding: utf-8 -*-\n"""Caf\xe9."""\n',
    "broken/deep.py": b"x = 1" + b" + 1" * 200_000 + b"\n",
    # ignored: under site-packages, or not *.py
    "lib/site-packages/ignored.py": b'"""Must not be indexed."""\n',
    "lib/site-packages/deeper/also_ignored.py": b'"""Nor this."""\n',
    "pkg/notes.txt": b'"""Not Python."""\n',
    "pkg/stub.pyi": b'"""A stub."""\n',
    "pkg/alpha.pyc": b"\x00\x01",
}
PY_FILES = 11  # *.py outside site-packages above
SKIPPED = 4  # the broken/ files
DOCSTRINGS = 18  # pkg 1, pkg.alpha 12, pkg.beta 1, pkg.deep_ok 1, tools.latin 2, top 1


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for rel, data in CORPUS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


_KIND = {
    ast.Module: "module",
    ast.ClassDef: "class",
    ast.FunctionDef: "function",
    ast.AsyncFunctionDef: "async function",
}


def expected_index(root: Path) -> tuple[dict[str, int], Counter[tuple[str, str, str]]]:
    """Counts and ``(path, kind, docstring)`` rows from a plain ast walk over ``root``."""
    files = parsed = skipped = 0
    rows: Counter[tuple[str, str, str]] = Counter()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "site-packages"]
        for name in filenames:
            if not name.endswith(".py"):
                continue
            files += 1
            path = os.path.join(dirpath, name)
            try:
                tree = ast.parse(Path(path).read_bytes())
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                skipped += 1
                continue
            parsed += 1
            for node in ast.walk(tree):
                if isinstance(node, tuple(_KIND)):
                    doc = ast.get_docstring(node)  # type: ignore[arg-type]
                    if doc:
                        rows[(path, _KIND[type(node)], doc)] += 1
    counts = {
        "files": files,
        "parsed": parsed,
        "skipped": skipped,
        "docstrings": sum(rows.values()),
    }
    return counts, rows


def query(db: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def db_rows(db: Path) -> Counter[tuple[str, str, str]]:
    return Counter(query(db, "SELECT path, kind, docstring FROM docstrings"))


def fts_count(db: Path) -> int:
    return query(db, "SELECT count(*) FROM docstrings_fts")[0][0]


def check_index(root: Path, db: Path, result: dict[str, int]) -> None:
    counts, rows = expected_index(root)
    # the walker above is sanity-checked against the corpus as written
    assert counts["files"] == PY_FILES and counts["skipped"] == SKIPPED
    assert counts["docstrings"] == DOCSTRINGS
    assert result == counts
    assert db_rows(db) == rows  # exactly these rows: nothing missing, nothing twice
    assert DocStore(db).count() == counts["docstrings"] == fts_count(db)
    quals = {q for (q,) in query(db, "SELECT qualname FROM docstrings")}
    assert {
        "pkg",
        "pkg.alpha",
        "pkg.alpha.Outer",
        "pkg.alpha.Outer.Inner",
        "pkg.alpha.Outer.Inner.method",
        "pkg.alpha.Outer.Inner.amethod",
        "pkg.alpha.fetch",
        "pkg.alpha.factory.<locals>.closure",
        "pkg.alpha.factory.<locals>.Local",
        "pkg.alpha.decorated",
        "pkg.alpha.conditional",
        "pkg.alpha.Fallback",
        "pkg.beta.parse_widget",
        "pkg.deep_ok.total",
        "tools.latin",
        "top",
    } <= quals
    assert not any("undocumented" in q or "blank" in q or "spaces" in q for q in quals)
    assert not any("ignored" in p or p.endswith(".pyi") for (p, _, _) in rows)
    kinds = dict(query(db, "SELECT qualname, kind FROM docstrings WHERE path LIKE '%alpha.py'"))
    assert kinds["pkg.alpha.Outer.Inner.amethod"] == "async function"
    assert kinds["pkg.alpha.fetch"] == "async function"
    assert kinds["pkg.alpha.Outer"] == "class"
    assert kinds["pkg.alpha"] == "module"

    hits = DocStore(db).search("zephyrquartz")
    assert [h.path for h in hits] == [str(root / "pkg" / "alpha.py")]
    assert hits[0].qualname == "pkg.alpha.Outer"
    assert "[zephyrquartz]" in hits[0].snippet
    hits = DocStore(db).search("parse a widget")
    assert hits and hits[0].path == str(root / "pkg" / "beta.py")
    assert hits[0].qualname == "pkg.beta.parse_widget"
    assert all(isinstance(h.rank, float) for h in hits)
    assert DocStore(db).search("café crème")[0].path == str(root / "tools" / "latin.py")


def check_progress(root: Path, events: list[object], files: int) -> None:
    progress = [e for e in events if isinstance(e, Progress)]
    assert len(progress) == files  # one per file
    py = {str(p) for p in root.rglob("*.py") if "site-packages" not in p.parts}
    assert {p.path for p in progress} == py
    assert {p.total for p in progress} == {files}
    skipped = {p.path for p in progress if p.status == "skipped"}
    assert skipped == {str(p) for p in (root / "broken").glob("*.py")}
    assert all(p.error for p in progress if p.status == "skipped")


# ---- in-process ---------------------------------------------------------------------------------


async def test_in_process(corpus: Path, tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    handler = DocIndex(timeout=120).run(root=str(corpus), db=str(db))
    events = [ev async for ev in handler.stream_events()]
    result = await handler
    check_index(corpus, db, result)
    check_progress(corpus, events, result["files"])

    # a second run over the same database leaves the same rows (idempotent writes)
    again = await DocIndex(timeout=120).run(root=str(corpus), db=str(db))
    assert again == result
    check_index(corpus, db, again)

    # rows of a file that disappeared are pruned
    (corpus / "top.py").unlink()
    third = await DocIndex(timeout=120).run(root=str(corpus), db=str(db))
    assert third["files"] == result["files"] - 1
    assert third["docstrings"] == result["docstrings"] - 1 == DocStore(db).count()


async def test_empty_root_stops_at_once(tmp_path: Path) -> None:
    (tmp_path / "empty" / "site-packages").mkdir(parents=True)
    (tmp_path / "empty" / "site-packages" / "x.py").write_text('"""ignored"""\n')
    db = tmp_path / "index.db"
    result = await DocIndex(timeout=30).run(root=str(tmp_path / "empty"), db=str(db))
    assert result == {"files": 0, "parsed": 0, "skipped": 0, "docstrings": 0}
    assert DocStore(db).count() == 0


def test_store_replace_is_idempotent(tmp_path: Path) -> None:
    store = DocStore(tmp_path / "s.db")
    store.create_schema()
    store.create_schema()
    rows = [
        DocRow("m", "m", "module", 1, "Module about apples."),
        DocRow("m", "m.f", "function", 3, "F."),
    ]
    for _ in range(3):
        assert store.replace_file("/x/m.py", rows) == 2
    assert store.count() == 2 == fts_count(tmp_path / "s.db")
    store.replace_file("/x/m.py", rows[1:])
    assert store.count() == 1 == fts_count(tmp_path / "s.db")
    assert store.search("apples") == []
    # queries are words, not FTS5 syntax
    for q in ['"', "f(", "NEAR AND OR", "-x", "*", ""]:
        store.search(q)


# ---- distributed: NATS + two worker processes ---------------------------------------------------


@contextlib.asynccontextmanager
async def workers(url: str, n: int) -> AsyncIterator[list[WorkerProcess]]:
    """``n`` worker processes, yielded once each has printed its ready line; killed on exit."""
    procs: list[WorkerProcess] = []
    try:
        for _ in range(n):
            procs.append(
                await WorkerProcess.start("examples.docindex.workflow:DocIndex", url, cwd=REPO_ROOT)
            )
        await asyncio.gather(*(w.wait_ready(READY_TIMEOUT) for w in procs))
        yield procs
    finally:
        for w in procs:
            w.kill()
            await w.stop(timeout=5)


async def stop_workers(procs: list[WorkerProcess]) -> list[str]:
    """SIGTERM each worker and wait (with a deadline) for a clean exit; their last output lines."""
    codes = await asyncio.gather(*(w.stop(timeout=30) for w in procs))
    assert codes == [0] * len(procs)
    return [w.output() for w in procs]


async def test_distributed_two_workers(
    nats_server: EmbeddedNats, corpus: Path, tmp_path: Path
) -> None:
    db = tmp_path / "index.db"
    async with workers(nats_server.url, 2) as procs:
        client = await NatsClient.connect(nats_server.url)
        try:
            handler = await client.start(DocIndex, root=str(corpus), db=str(db), timeout=120)
            events = [ev async for ev in handler.stream_events()]
            result = await handler
            check_index(corpus, db, result)
            check_progress(corpus, events, result["files"])
            runs = [handler.run_id]

            # the same job again on the same database: same rows, no duplicates
            handler = await client.start(DocIndex, root=str(corpus), db=str(db), timeout=120)
            assert await handler == result
            check_index(corpus, db, result)
            runs.append(handler.run_id)
            done = [c for run in runs for c in await completions_of(client.log, DocIndex, run)]
        finally:
            await client.close()
        # both workers were alive throughout and stop cleanly
        assert all(w.proc.returncode is None for w in procs)
        outs = await stop_workers(procs)

    # From the log: per run, discover once, parse once per file and finish at most once per file
    # (finish triggers still queued when the fan-in completes the run are acked unrun), no step
    # twice on one trigger, and the parses spread over both processes.
    files = result["files"]
    keys = Counter((c.run, c.trigger, c.step) for c in done)
    assert max(keys.values()) == 1, f"a step ran twice on one trigger: {keys.most_common(2)}"
    for run in runs:
        steps = Counter(c.step for c in done if c.run == run)
        assert steps["discover"] == 1 and steps["parse"] == files and 1 <= steps["finish"] <= files, steps
    parse_pids = Counter(c.pid for c in done if c.step == "parse")
    assert set(parse_pids) == {str(w.pid) for w in procs}, parse_pids

    # the workers' own counters agree: each handled some steps, and together the completions the
    # log holds, plus the steps that ran but did not commit: a commit dropped because the run had
    # ended meanwhile (a finish racing the fan-in's end, counted in ``cancelled``) or one the log
    # dropped as a duplicate. A step counted twice would go past that bound.
    def counts(counter: str) -> list[int]:
        stopped = [[ln for ln in out.splitlines() if "jetloom worker stopped" in ln] for out in outs]
        assert [len(lines) for lines in stopped] == [1] * len(outs), outs
        return [int(re.findall(rf"\b{counter}=(\d+)", lines[0])[0]) for lines in stopped]

    handled = counts("handled")
    assert all(n > 0 for n in handled), handled
    unstored = sum(counts("cancelled")) + sum(counts("duplicates"))
    assert len(done) <= sum(handled) <= len(done) + unstored, (handled, len(done), unstored)


class Completion(NamedTuple):
    run: str
    trigger: int
    step: str
    pid: str


async def completions_of(log: JetStreamLog, workflow: type, run_id: str) -> list[Completion]:
    """Every step completion in a run's log (a ``StepCompleted``, or the event of a one-message
    commit) with the pid of the worker that made it, leaving out orphans."""
    raws = await log.read(workflow.workflow_name, run_id)
    records = [decode_record(r, workflow.events) for r in raws]
    orphans = fold(records).orphans
    out = []
    for raw, rec in zip(raws, records, strict=True):
        done = completed_step(rec)
        if done is None or rec.seq in orphans:
            continue
        worker = rec.body.worker if isinstance(rec.body, StepCompleted) else raw.headers[H_WORKER]
        out.append(Completion(run_id, done[0], done[1], worker.rsplit(":", 1)[1]))
    return out


# ---- through `jetloom dev` and the SDK ----------------------------------------------------------


async def test_through_jetloom_dev_and_the_sdk(corpus: Path, tmp_path: Path) -> None:
    """`jetloom dev examples/docindex/jetloom.toml` brings up NATS, the control plane and two
    workers; the SDK runs the job over HTTP; Ctrl-C (SIGINT) stops everything cleanly."""
    from services.client import Client

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "dev", "examples/docindex/jetloom.toml",
        "--port", "0", "--nats-port", "0", "--store-dir", str(tmp_path / "nats"),
        cwd=REPO_ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(READY_TIMEOUT):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("jetloom dev ready"), line
        fields = dict(part.split("=", 1) for part in line.split()[3:])
        assert fields["workers"] == "2"
        db = tmp_path / "index.db"
        async with Client(fields["api"]) as client:
            pids = {e["pid"] for e in await client.services()}
            assert len(pids) == 2
            handle = await client.start("DocIndex", root=str(corpus), db=str(db))
            events = [ev async for ev in handle.stream()]
            result = await handle.result()
        check_index(corpus, db, result)
        check_progress(corpus, [e for e in events if isinstance(e, Progress)], result["files"])

        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        for pid in pids:  # the workers are gone too
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
