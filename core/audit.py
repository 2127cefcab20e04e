"""Append-only audit log (SQLite, or the schema `audit` on PostgreSQL): every turn with who asked what, what was
retrieved, which model and adapter answered, every tool call with its arguments, result and duration, the answer,
latency, errors;
and events (`record_event`: denied and malformed tool calls, documents ingested or removed, logins ...).

A turn is recorded however it ends: `status` is `complete`, `partial` (interrupted mid-stream, e.g. the
user pressed Stop: tools may already have acted) or `error`.

Triggers refuse UPDATE, DELETE and a REPLACE of an existing row, so the log cannot be edited through SQL, and
every row is chained to the one before by hash, so an edit made around the triggers shows (`core/audit_chain.py`,
`assistant audit verify`); WAL keeps readers and the writer apart, and each turn is one transaction, so a crash
never leaves half a record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core import audit_chain, db
from core.clock import now_iso
from core.db import Columns

SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    user TEXT NOT NULL, role TEXT, department TEXT,
    conversation_id TEXT,
    question TEXT NOT NULL,
    kb TEXT,
    retrieved TEXT NOT NULL,        -- JSON [{chunk_id, source, page, score, dense, bm25}]
    model TEXT, adapter TEXT,
    thinking_mode INTEGER,
    tool_calls TEXT NOT NULL,       -- JSON [{name, arguments, ok, result, error, denied, duration_s}]
    answer TEXT, thinking TEXT,
    cited TEXT,                     -- JSON [chunk_id]
    latency_s REAL, retrieval_ms REAL, prefill_s REAL, tokens_per_s REAL,
    error TEXT,
    status TEXT,                    -- complete | partial | error
    malformed_calls TEXT,           -- JSON [error]: tool calls the model wrote that could not be parsed
    guard TEXT,                     -- JSON {status, unsupported}: the grounding guard's verdict
    channel TEXT,                   -- ui | cli | api (NULL: before channels were recorded)
    key_id TEXT,                    -- the API key the turn came with
    cached_from INTEGER,            -- the turn whose answer the cache served again
    hash TEXT                       -- sha256 of the previous row's hash and this row (core/audit_chain.py)
);
"""
# columns newer than the first schema: added to older logs on open, never rewritten (hashes: chained once)
_ADDED_COLUMNS: Columns = {"turns": [("status", "TEXT"), ("malformed_calls", "TEXT"), ("guard", "TEXT"),
                                     ("hash", "TEXT"), ("channel", "TEXT"), ("key_id", "TEXT"),
                                     ("cached_from", "INTEGER")],
                           "events": [("hash", "TEXT")]}


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as conn:  # creates the file, the tables and any columns added since
            if not audit_chain.chained(conn):
                audit_chain.migrate(conn)  # a log from before the chain: its rows are hashed, once

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        with db.connect(self.path, {"sqlite": SCHEMA + EVENTS_SCHEMA + GUARDS_SCHEMA,
                                    "postgres": SCHEMA + EVENTS_SCHEMA + PG_GUARDS_SCHEMA}, _ADDED_COLUMNS) as conn:
            if db.dialect(conn) == "sqlite":
                conn.execute("PRAGMA recursive_triggers=ON")  # a REPLACE's implicit delete fires the DELETE trigger
            yield conn

    def record(self, **fields: Any) -> int:
        row = {k: (json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, list | dict) else v)
               for k, v in fields.items() if k not in ("id", "hash")}
        row.setdefault("ts", now_iso("milliseconds"))
        row.setdefault("retrieved", "[]")
        row.setdefault("tool_calls", "[]")
        with self._connect() as conn:
            return audit_chain.append(conn, "turns", row)

    def get(self, turn_id: int) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM turns WHERE id = ?", (turn_id,)).fetchone()
        return _decode(row) if row else None

    def recent(self, limit: int = 20, user: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM turns", []
        if user:
            sql, args = sql + " WHERE user = ?", [user]
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [_decode(r) for r in rows]


def _decode(row: Any) -> dict[str, Any]:
    d = dict(row)
    for k in ("retrieved", "tool_calls", "cited", "malformed_calls", "guard"):
        if d.get(k):
            d[k] = json.loads(d[k])
    return d


# Events that are not chat turns (logins, account and adapter changes): their own append-only table.
EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    event TEXT NOT NULL,            -- login, login_failed, login_throttled, user_added, adapter_promoted, ...
    user TEXT NOT NULL,             -- who did it (or tried to)
    detail TEXT NOT NULL,           -- JSON: target account, versions, client address, reason ...
    hash TEXT                       -- sha256 of the previous event's hash and this event (core/audit_chain.py)
);
"""
GUARDS_SCHEMA = audit_chain.MARKER_SCHEMA + "".join(
    f"{statement};\n" for table in audit_chain.TABLES for statement in audit_chain.guard_statements(table))
PG_GUARDS_SCHEMA = audit_chain.PG_MARKER_SCHEMA + audit_chain.pg_guard_schema()


def record_event(log: AuditLog | Path, event: str, user: str, **detail: Any) -> int:
    """Append one event (e.g. `record_event(settings.audit_db, "login_failed", name, address=ip)`)."""
    log = log if isinstance(log, AuditLog) else AuditLog(log)
    with log._connect() as conn:
        return audit_chain.append(conn, "events", {
            "ts": now_iso("milliseconds"), "event": event, "user": user,
            "detail": json.dumps(detail, ensure_ascii=False, default=str)})


def list_events(log: AuditLog | Path, event: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The latest events first, optionally of one kind."""
    log = log if isinstance(log, AuditLog) else AuditLog(log)
    with log._connect() as conn:
        where = " WHERE event = ?" if event else ""
        rows = conn.execute(f"SELECT * FROM events{where} ORDER BY id DESC LIMIT ?",
                            ([event] if event else []) + [limit]).fetchall()
    return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]
