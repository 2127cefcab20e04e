"""SQLite as every store of the project uses it: WAL, one transaction per `with`, the connection always
closed, and the schema (with columns added after a first release) created once per process and file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Columns", "connect"]

Columns = dict[str, list[tuple[str, str]]]  # table -> [(column, declaration)] added after the first schema


def _add_columns(conn: sqlite3.Connection, added: Columns) -> None:
    for table, columns in added.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns:
            if name not in have:  # a database from before: add, never rewrite
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


_READY: set[tuple[str, str]] = set()  # (file, schema) pairs this process has already created
# One idle connection per file held for the life of the process: closing the *last* connection to a WAL database
# checkpoints and truncates its log, which would otherwise happen after every short transaction.
_KEEP: dict[str, sqlite3.Connection] = {}


@contextmanager
def connect(path: Path, schema: str = "", added: Columns | None = None, check_same_thread: bool = True,
            synchronous: str | None = None) -> Iterator[sqlite3.Connection]:
    """A connection in one transaction: committed on success, rolled back on any error, then closed.
    `synchronous="NORMAL"` (WAL): a commit is not flushed to disk at once; a crash of the process loses nothing and
    the file stays consistent, a power cut may lose the last commits (for stores that can afford that)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = (str(path), schema)
    if not path.exists():
        _READY.discard(key)  # a new (or deleted and recreated) file needs its schema
        stale = _KEEP.pop(str(path), None)
        if stale is not None:
            stale.close()
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=check_same_thread)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA foreign_keys=ON")  # per connection
        if synchronous:
            conn.execute(f"PRAGMA synchronous={synchronous}")
        if schema and key not in _READY:  # WAL mode and tables persist in the file: once per process is enough
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(schema)
            _add_columns(conn, added or {})
            _READY.add(key)
        if str(path) not in _KEEP:
            keeper = sqlite3.connect(str(path), check_same_thread=False)
            keeper.execute("PRAGMA schema_version").fetchone()  # opens the file and its log: it counts as a reader
            _KEEP[str(path)] = keeper
        with conn:
            yield conn
    finally:
        conn.close()
