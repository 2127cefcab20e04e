"""The chat UI's own SQLite database (users, conversations, messages, feedback): one schema, WAL, each
write one transaction, so a crash never leaves half a conversation or a feedback row without its turn."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core import db
from core.db import Columns

__all__ = ["connect"]

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
-- API keys: each acts as its user (role and department read from `users` on every request)
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,             -- the public part of the key (shown in lists and in the audit)
    user TEXT NOT NULL,
    secret_hash TEXT NOT NULL,       -- sha256 of the secret part (a random 256-bit secret: never stored)
    label TEXT,
    scopes TEXT NOT NULL,            -- comma list: chat, retrieve
    rpm INTEGER NOT NULL,            -- requests per minute
    daily_tokens INTEGER NOT NULL,   -- model tokens per day (UTC)
    created TEXT NOT NULL,
    expires REAL,                    -- unix time, NULL: never
    revoked REAL,                    -- unix time, NULL: valid
    last_used REAL
);
CREATE TABLE IF NOT EXISTS api_usage (
    key_id TEXT NOT NULL, day TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0,
    refused INTEGER NOT NULL DEFAULT 0, cached INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
CREATE TABLE IF NOT EXISTS api_rate (
    key_id TEXT NOT NULL, minute INTEGER NOT NULL, requests INTEGER NOT NULL,
    PRIMARY KEY (key_id, minute)
);
"""


# columns added after the first release: databases made before get them on first use
_ADDED_COLUMNS: Columns = {"users": [("must_change", "INTEGER NOT NULL DEFAULT 0")]}


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the app's database in one transaction: committed on success, rolled back on error."""
    # users, conversations, feedback, keys and usage: consistent after any crash; a power cut may lose the last
    # commits (the audit log, core.audit, flushes every one)
    with db.connect(path, SCHEMA, _ADDED_COLUMNS, synchronous="NORMAL") as conn:
        yield conn
