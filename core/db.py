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


@contextmanager
def connect(path: Path, schema: str = "", added: Columns | None = None,
            check_same_thread: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection in one transaction: committed on success, rolled back on any error, then closed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = (str(path), schema)
    if not path.exists():
        _READY.discard(key)  # a new (or deleted and recreated) file needs its schema
    conn = sqlite3.connect(str(path), timeout=10, check_same_thread=check_same_thread)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA foreign_keys=ON")  # per connection
        if schema and key not in _READY:  # WAL mode and tables persist in the file: once per process is enough
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(schema)
            _add_columns(conn, added or {})
            _READY.add(key)
        with conn:
            yield conn
    finally:
        conn.close()
