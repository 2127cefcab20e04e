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
    created TEXT NOT NULL
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
    UNIQUE (audit_id, user)
);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
            _READY.add(str(path))
        with conn:
            yield conn
    finally:
        conn.close()
