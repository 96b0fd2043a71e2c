"""``DocIndex``: index the docstrings of a tree of Python files into SQLite FTS5.

    discover ──FileFound×N──▶ parse (8 per process) ──FileIndexed×N──▶ finish ──▶ StopEvent
                                  │
                                  └──Progress (stream)

``discover`` walks ``root`` for ``*.py`` files (skipping ``site-packages`` directories), creates the
schema, records ``expected = N`` in the run state and fans out one ``FileFound`` per file.
``parse`` reads one file, extracts the docstring of its module and of every class, function and
async function, and replaces the file's rows in the database (idempotent, so a re-run after a crash
is harmless). A file that does not decode or parse is *skipped*, reported as data, never raised.
``finish`` fans in with ``collect_events`` and returns the totals::

    {"files": N, "parsed": P, "skipped": S, "docstrings": D}

In-process::

    result = await DocIndex(timeout=600).run(root="/usr/lib/python3.11", db="docs.db")

Distributed: ``python -m services.cli worker examples.docindex.workflow:DocIndex --nats URL``
in as many processes as you like, and ``NatsClient.start(DocIndex, root=..., db=...)``.
"""

from __future__ import annotations

import ast
import asyncio
import os
import sysconfig
import threading
from pathlib import Path

from engine import Context, Event, StartEvent, StopEvent, Workflow, step

from .store import DocRow, DocStore

__all__ = [
    "DocIndex",
    "FileFound",
    "FileIndexed",
    "IndexStart",
    "Progress",
    "default_root",
    "extract_docstrings",
    "find_python_files",
    "module_name",
]

#: CPython 3.11 keeps the AST constructor's recursion counter in interpreter-wide state, so
#: ``ast.parse`` in several threads at once can fail with "SystemError: AST constructor recursion
#: depth mismatch" (python/cpython#106905). Parsing holds the GIL anyway, so one at a time per
#: process costs little; reading files and writing the database stay concurrent.
_PARSE_LOCK = threading.Lock()

#: Errors that make a file "skipped" rather than failing the run.
SKIP_ERRORS = (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError, OSError)


class IndexStart(StartEvent):
    """Index the ``*.py`` files under ``root`` into the SQLite database ``db``."""

    root: str
    db: str


class FileFound(Event):
    """One file to index (``index`` of ``total``)."""

    path: str
    root: str
    db: str
    index: int
    total: int


class FileIndexed(Event):
    """The outcome for one file: ``status`` is ``"parsed"`` or ``"skipped"`` (then ``error``
    says why); ``docstrings`` is how many rows it has in the index."""

    path: str
    status: str
    docstrings: int = 0
    error: str = ""


class Progress(Event):
    """Streamed once per file as it is indexed."""

    path: str
    status: str
    docstrings: int
    total: int
    error: str = ""


# ---- pure helpers (no engine) -------------------------------------------------------------------


def default_root() -> str:
    """The running interpreter's standard library directory."""
    return sysconfig.get_paths()["stdlib"]


def find_python_files(root: str | os.PathLike[str]) -> list[str]:
    """Every ``*.py`` file under ``root`` (absolute paths, sorted), not descending into
    ``site-packages`` directories."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(os.path.abspath(root)):
        dirnames[:] = sorted(d for d in dirnames if d != "site-packages")
        out.extend(os.path.join(dirpath, f) for f in filenames if f.endswith(".py"))
    out.sort()
    return out


def module_name(path: str, root: str) -> str:
    """The dotted module name of ``path`` relative to ``root`` (``json/decoder.py`` →
    ``json.decoder``, ``json/__init__.py`` → ``json``). When ``root`` is itself a package
    (has an ``__init__.py``), names start with its directory name."""
    root = os.path.abspath(root)
    rel = Path(os.path.relpath(path, root)).with_suffix("")
    parts = list(rel.parts)
    if os.path.isfile(os.path.join(root, "__init__.py")):
        parts.insert(0, os.path.basename(root))
    if parts and parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


_KINDS: dict[type[ast.AST], str] = {
    ast.ClassDef: "class",
    ast.FunctionDef: "function",
    ast.AsyncFunctionDef: "async function",
}


def _collect(tree: ast.Module, module: str) -> list[DocRow]:
    """Walk ``tree`` (iteratively: a deep expression must not hit Python's recursion limit) and
    collect docstrings with ``__qualname__``-style names (``<locals>`` inside functions)."""
    rows: list[DocRow] = []
    doc = ast.get_docstring(tree)
    if doc:
        rows.append(DocRow(module, module, "module", tree.body[0].lineno, doc))
    stack: list[tuple[ast.AST, tuple[str, ...]]] = [(tree, ())]
    while stack:
        node, scope = stack.pop()
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node)
            if doc:
                qual = ".".join([module, *scope, node.name])
                rows.append(DocRow(module, qual, _KINDS[type(node)], node.lineno, doc))
            scope = (*scope, node.name)
            if not isinstance(node, ast.ClassDef):
                scope = (*scope, "<locals>")
        stack.extend((child, scope) for child in reversed(list(ast.iter_child_nodes(node))))
    return rows


def extract_docstrings(source: bytes, path: str, module: str) -> list[DocRow]:
    """The non-empty docstrings of a module's source, in source order.

    ``source`` is bytes, so ``ast.parse`` honours the file's encoding cookie and BOM.

    Raises:
        SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError: the source
            does not decode or parse (see ``SKIP_ERRORS``).
    """
    with _PARSE_LOCK:
        tree = ast.parse(source, filename=path)
    return _collect(tree, module)


def index_file(store: DocStore, path: str, root: str) -> FileIndexed:
    """Parse ``path`` and replace its rows in ``store``. A file that cannot be read, decoded or
    parsed loses its rows (if any) and is reported as skipped."""
    try:
        with open(path, "rb") as f:
            source = f.read()
        rows = extract_docstrings(source, path, module_name(path, root))
    except SKIP_ERRORS as exc:
        store.replace_file(path, [])
        return FileIndexed(path=path, status="skipped", error=f"{type(exc).__name__}: {exc}")
    n = store.replace_file(path, rows)
    return FileIndexed(path=path, status="parsed", docstrings=n)


# ---- the workflow -------------------------------------------------------------------------------


def _prepare(root: str, db: str) -> tuple[str, str, list[str]]:
    """Resolve the paths, create the schema, drop rows of files that are gone; the files."""
    root, db = os.path.abspath(root), os.path.abspath(db)
    if not os.path.isdir(root):
        raise NotADirectoryError(f"root {root!r} is not a directory")
    files = find_python_files(root)
    store = DocStore(db)
    store.create_schema()
    store.prune(files)
    return root, db, files


class DocIndex(Workflow):
    """Index the docstrings of every ``*.py`` under ``root`` into the SQLite FTS5 database ``db``.

    The result is ``{"files": N, "parsed": P, "skipped": S, "docstrings": D}``.
    """

    @step
    async def discover(self, ctx: Context, ev: IndexStart) -> FileFound | StopEvent | None:
        root, db, files = await asyncio.to_thread(_prepare, ev.root, ev.db)
        await ctx.store.set("expected", len(files))
        if not files:
            return StopEvent(result={"files": 0, "parsed": 0, "skipped": 0, "docstrings": 0})
        for i, path in enumerate(files):
            ctx.send_event(FileFound(path=path, root=root, db=db, index=i, total=len(files)))
        return None

    @step(num_workers=8)
    def parse(self, ctx: Context, ev: FileFound) -> FileIndexed:
        done = index_file(DocStore(ev.db), ev.path, ev.root)
        ctx.write_event_to_stream(
            Progress(
                path=done.path,
                status=done.status,
                docstrings=done.docstrings,
                total=ev.total,
                error=done.error,
            )
        )
        return done

    @step
    async def finish(self, ctx: Context, ev: FileIndexed) -> StopEvent | None:
        expected = await ctx.store.get("expected")
        events = ctx.collect_events(ev, [FileIndexed] * expected)
        if events is None:
            return None
        parsed = sum(1 for e in events if e.status == "parsed")
        return StopEvent(
            result={
                "files": len(events),
                "parsed": parsed,
                "skipped": len(events) - parsed,
                "docstrings": sum(e.docstrings for e in events),
            }
        )
