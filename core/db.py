"""The one data-access layer of the stores: SQLite files by default, PostgreSQL when the data home is bound to
`database_url` (`use_settings`; core/pg.py). Either way: one transaction per `with`, committed on success and
rolled back on any error, the connection always closed (or returned to its pool), and the schema (with columns
added after a first release) created once per process and file.

SQLite: WAL. PostgreSQL: each store file becomes a schema named after it (app.db -> `app`) in the one database."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Columns", "begin_write", "connect", "connect_readonly", "database_url", "dialect", "use", "use_settings"]

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


Schema = str | Mapping[str, str]  # the DDL, or per dialect {"sqlite": ..., "postgres": ...} where they differ

# data home (resolved) -> the PostgreSQL URL its stores live in. Bound by whoever loads the settings (the CLIs,
# the UI, every server process building its chain); a home never bound keeps its SQLite files, unless a route for
# unbound homes is set (the test suite on PostgreSQL: a database per data home).
_ROUTES: dict[str, str] = {}
_UNBOUND: Callable[[Path], str] | None = None


def route_unbound(route: Callable[[Path], str] | None) -> None:
    """Where the stores of a data home nobody bound live (None: their SQLite files)."""
    global _UNBOUND
    _UNBOUND = route


def use(home: Path | str, url: str | None) -> None:
    """Keep the stores of data home `home` in PostgreSQL at `url` (None: SQLite files again)."""
    key = str(Path(home).resolve())
    if url:
        from core import pg

        pg.check_url(url)
        _ROUTES[key] = url
    else:
        _ROUTES.pop(key, None)


def use_settings(settings: Any) -> None:
    """Bind `settings.home` to `settings.database_url` (a no-op for the SQLite default)."""
    if settings.database_url:
        use(settings.home, settings.database_url)
    elif _ROUTES and _UNBOUND is None:
        use(settings.home, None)


def database_url(path: Path) -> str | None:
    """Where the store file `path` lives: a PostgreSQL URL, or None for the SQLite file itself."""
    if not _ROUTES and _UNBOUND is None:
        return None
    home = str(path.parent.resolve())
    url = _ROUTES.get(home)
    if url is None and _UNBOUND is not None:
        url = _ROUTES[home] = _UNBOUND(Path(home))
    return url


def schema_name(path: Path) -> str:
    """The PostgreSQL schema of a store file: its name without suffix, as an identifier (app.db -> app)."""
    return re.sub(r"\W", "_", path.stem.lower()) or "app"


def dialect(conn: Any) -> str:
    """'sqlite' or 'postgres': for the few statements that differ (and are kept side by side at their use)."""
    return getattr(conn, "dialect", "sqlite")


def begin_write(conn: Any, *names: str) -> None:
    """Serialize this transaction with every other writer taking the same lock, until it ends: SQLite takes the
    file's write lock (BEGIN IMMEDIATE: it has one writer anyway); PostgreSQL an advisory lock on the store's
    schema and `names` (e.g. a table), so a read-then-write (a chain head, a counter) is never raced."""
    if dialect(conn) == "sqlite":
        conn.execute("BEGIN IMMEDIATE")
    else:
        from core import pg

        conn.execute("SELECT pg_advisory_xact_lock(?)", (pg.lock_key(conn.schema, *names),))


def _for(schema: Schema, name: str) -> str:
    return schema if isinstance(schema, str) else schema.get(name, "")


@contextmanager
def connect(path: Path, schema: Schema = "", added: Columns | None = None, check_same_thread: bool = True,
            synchronous: str | None = None, local: bool = False) -> Iterator[Any]:
    """A connection in one transaction: committed on success, rolled back on any error, then closed.
    `local`: a per-node SQLite file whatever the data home is bound to (a disposable cache, a demo system).
    `synchronous="NORMAL"` (WAL): a commit is not flushed to disk at once; a crash of the process loses nothing and
    the file stays consistent, a power cut may lose the last commits (for stores that can afford that)."""
    if not local and (url := database_url(path)):
        from core import pg

        with pg.connect(url, schema_name(path), _for(schema, "postgres"), added) as pconn:
            yield pconn
        return
    schema = _for(schema, "sqlite")
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


@contextmanager
def connect_readonly(path: Path) -> Iterator[Any]:
    """A read-only look at a store that must exist (an audit check, retraining's reads): never creates it."""
    if url := database_url(path):
        from core import pg

        with pg.connect(url, schema_name(path), read_only=True) as pconn:
            yield pconn
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()
