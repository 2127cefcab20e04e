"""The chat UI's own SQLite database (users, conversations, messages, feedback): one schema, WAL, each
write one transaction, so a crash never leaves half a conversation or a feedback row without its turn."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    department TEXT,
    created TEXT NOT NULL,
    must_change INTEGER NOT NULL DEFAULT 0   -- 1: the next login must set a new password first
);
-- failed logins per account ('user:NAME') and per client address ('addr:IP'): the back-off lives here,
-- not in a browser session, so new sessions and new tabs do not reset it
CREATE TABLE IF NOT EXISTS login_throttle (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure REAL NOT NULL,
    locked_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    title TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_user ON conversations(user, updated);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,              -- user | assistant
    content TEXT NOT NULL,
    payload TEXT,                    -- JSON: the chain's answer (sources, tool calls, thinking, audit id)
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation_id, id);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    audit_id INTEGER NOT NULL,
    user TEXT NOT NULL,
    rating INTEGER NOT NULL,         -- 1 thumbs up, -1 thumbs down
    comment TEXT,
    correction TEXT,                 -- the answer it should have been
    example TEXT NOT NULL,           -- JSON: the turn as a training conversation (messages + tools)
    adapter TEXT,
    created TEXT NOT NULL,
    review TEXT,                     -- corrections only: NULL pending, 'approved' or 'rejected' by an admin
    reviewer TEXT,
    UNIQUE (audit_id, user)
);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# columns added after the first release: databases made before get them on first use
_ADDED_COLUMNS = {
    "users": [("must_change", "INTEGER NOT NULL DEFAULT 0")],
    "feedback": [("review", "TEXT"), ("reviewer", "TEXT")],
}


def _migrate(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


_READY: set[str] = set()  # databases whose schema this process has already created


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection in one transaction: committed on success, rolled back on any error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _READY.discard(str(path))  # a new (or deleted and recreated) file needs its schema
    conn = sqlite3.connect(str(path), timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA foreign_keys=ON")  # per connection
        if str(path) not in _READY:  # WAL mode and tables persist in the file: once per process is enough
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            _migrate(conn)
            _READY.add(str(path))
        with conn:
            yield conn
    finally:
        conn.close()
