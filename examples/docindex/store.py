"""The docstring index: a SQLite database with an FTS5 full-text index.

Several threads of several worker processes write one database file at once, so every call opens
its own short-lived connection (WAL journal, ``busy_timeout``) and every write is one
``BEGIN IMMEDIATE`` transaction. Writes are idempotent: ``replace_file`` deletes a file's rows and
inserts its new ones in the same transaction, so a step that runs again after a crash leaves the
same rows behind, never duplicates.

Schema: ``docstrings`` holds one row per docstring (``path``, ``module``, ``qualname``, ``kind``,
``lineno``, ``docstring``); ``docstrings_fts`` is an external-content FTS5 index of its
``qualname`` and ``docstring`` columns, kept in sync by triggers.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

__all__ = ["DocRow", "DocStore", "Hit"]

BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docstrings (
    id        INTEGER PRIMARY KEY,
    path      TEXT    NOT NULL,
    module    TEXT    NOT NULL,
    qualname  TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    lineno    INTEGER NOT NULL,
    docstring TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS docstrings_path ON docstrings(path);
CREATE VIRTUAL TABLE IF NOT EXISTS docstrings_fts USING fts5(
    qualname, docstring,
    content='docstrings', content_rowid='id',
    tokenize='porter unicode61'
);
CREATE TRIGGER IF NOT EXISTS docstrings_ai AFTER INSERT ON docstrings BEGIN
    INSERT INTO docstrings_fts(rowid, qualname, docstring)
    VALUES (new.id, new.qualname, new.docstring);
END;
CREATE TRIGGER IF NOT EXISTS docstrings_ad AFTER DELETE ON docstrings BEGIN
    INSERT INTO docstrings_fts(docstrings_fts, rowid, qualname, docstring)
    VALUES ('delete', old.id, old.qualname, old.docstring);
END;
CREATE TRIGGER IF NOT EXISTS docstrings_au AFTER UPDATE ON docstrings BEGIN
    INSERT INTO docstrings_fts(docstrings_fts, rowid, qualname, docstring)
    VALUES ('delete', old.id, old.qualname, old.docstring);
    INSERT INTO docstrings_fts(rowid, qualname, docstring)
    VALUES (new.id, new.qualname, new.docstring);
END;
"""


class DocRow(NamedTuple):
    """One docstring of a file.

    Attributes:
        module: the dotted module name (``json.decoder``).
        qualname: the fully qualified name (``json.decoder.JSONDecoder.decode``; the module's
            own row has the module name; nested functions use ``<locals>`` as ``__qualname__``).
        kind: ``module``, ``class``, ``function`` or ``async function``.
        lineno: the line of the ``class``/``def`` (of the docstring itself for a module).
        docstring: the cleaned docstring (``ast.get_docstring``).
    """

    module: str
    qualname: str
    kind: str
    lineno: int
    docstring: str


class Hit(NamedTuple):
    """A search result. ``rank`` is FTS5's bm25 score: lower (more negative) is better."""

    path: str
    qualname: str
    snippet: str
    rank: float


class DocStore:
    """The index in the SQLite file ``db``. Cheap to create; holds no connection.

    Every method opens (and closes) its own connection, so one instance may be shared by
    threads, and every process may make its own.
    """

    def __init__(self, db: str | Path) -> None:
        self.db = str(db)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A new connection in autocommit mode (transactions are explicit), closed on exit."""
        conn = sqlite3.connect(self.db, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as conn:
            # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a deferred
            # read transaction never has to be upgraded, which fails at once with SQLITE_BUSY.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def create_schema(self) -> None:
        """Create the tables, index and triggers if missing (idempotent)."""
        with self._write() as conn:
            for stmt in _split_statements(_SCHEMA):
                conn.execute(stmt)

    def replace_file(self, path: str, rows: Iterable[DocRow]) -> int:
        """Make ``rows`` the docstrings of ``path``: delete the file's rows and insert these, in
        one transaction (idempotent). Returns how many rows were inserted."""
        data = [(path, *row) for row in rows]
        with self._write() as conn:
            conn.execute("DELETE FROM docstrings WHERE path = ?", (path,))
            conn.executemany(
                "INSERT INTO docstrings(path, module, qualname, kind, lineno, docstring) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                data,
            )
        return len(data)

    def prune(self, keep: Iterable[str]) -> int:
        """Delete the rows of every path not in ``keep`` (files gone since an earlier run).
        Returns the number of rows deleted."""
        keep_set = set(keep)
        with self._write() as conn:
            stale = [
                p
                for (p,) in conn.execute("SELECT DISTINCT path FROM docstrings")
                if p not in keep_set
            ]
            deleted = 0
            for p in stale:
                deleted += conn.execute("DELETE FROM docstrings WHERE path = ?", (p,)).rowcount
        return deleted

    def count(self) -> int:
        """Rows in the index."""
        with self.connect() as conn:
            return conn.execute("SELECT count(*) FROM docstrings").fetchone()[0]

    def rows(self, path: str | None = None) -> list[tuple[str, str, str, str, int, str]]:
        """``(path, module, qualname, kind, lineno, docstring)`` of every row (or of ``path``),
        ordered by path and line."""
        sql = "SELECT path, module, qualname, kind, lineno, docstring FROM docstrings"
        args: tuple[str, ...] = ()
        if path is not None:
            sql += " WHERE path = ?"
            args = (path,)
        with self.connect() as conn:
            return conn.execute(sql + " ORDER BY path, lineno, id", args).fetchall()

    def search(
        self,
        query: str,
        limit: int = 5,
        *,
        markers: tuple[str, str] = ("[", "]"),
        tokens: int = 16,
    ) -> list[Hit]:
        """The ``limit`` best docstrings for ``query``, ranked by bm25 (a match in the name
        weighs twice one in the text), each with a snippet whose matched terms are wrapped
        in ``markers``.

        The query is taken as words, not FTS5 syntax: docstrings with every word come first,
        then, if fewer than ``limit`` have them all, those with any.
        """
        words = re.findall(r"\w+", query)
        if not words or limit <= 0:
            return []
        terms = ['"' + w.replace('"', '""') + '"' for w in words]
        hits: list[Hit] = []
        seen: set[int] = set()
        with self.connect() as conn:
            for expr in (" AND ".join(terms), " OR ".join(terms)):
                rows = conn.execute(
                    """
                    SELECT d.id, d.path, d.qualname,
                           snippet(docstrings_fts, 1, ?, ?, '…', ?),
                           bm25(docstrings_fts, 2.0, 1.0) AS rank
                    FROM docstrings_fts JOIN docstrings AS d ON d.id = docstrings_fts.rowid
                    WHERE docstrings_fts MATCH ?
                    ORDER BY rank, d.id
                    LIMIT ?
                    """,
                    (markers[0], markers[1], tokens, expr, limit),
                ).fetchall()
                for rowid, path, qualname, snip, rank in rows:
                    if rowid not in seen and len(hits) < limit:
                        seen.add(rowid)
                        hits.append(Hit(path, qualname, snip, rank))
                if len(hits) >= limit or len(words) == 1:
                    break
        return hits


def _split_statements(script: str) -> Sequence[str]:
    """Split the schema script into statements (``CREATE TRIGGER`` bodies contain ``;``)."""
    out: list[str] = []
    buf: list[str] = []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        if sqlite3.complete_statement(text):
            out.append(text)
            buf = []
    return out
