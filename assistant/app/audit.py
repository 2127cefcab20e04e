"""Append-only audit log (SQLite): every turn with who asked what, what was retrieved, which model and
adapter answered, every tool call with its arguments, result and duration, the answer, latency, errors.

Triggers refuse UPDATE and DELETE, so the log cannot be edited through SQL; WAL keeps readers and the
writer apart, and each turn is one transaction, so a crash never leaves half a record.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    guard TEXT                      -- JSON {status, unsupported}: the grounding guard's verdict
);
CREATE TRIGGER IF NOT EXISTS turns_no_update BEFORE UPDATE ON turns
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS turns_no_delete BEFORE DELETE ON turns
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            if "guard" not in {r[1] for r in conn.execute("PRAGMA table_info(turns)")}:  # logs from before the guard
                conn.execute("ALTER TABLE turns ADD COLUMN guard TEXT")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def record(self, **fields: Any) -> int:
        row = {k: (json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, list | dict) else v)
               for k, v in fields.items()}
        row.setdefault("ts", datetime.now(UTC).isoformat(timespec="milliseconds"))
        row.setdefault("retrieved", "[]")
        row.setdefault("tool_calls", "[]")
        cols = list(row)
        with self._connect() as conn:
            cur = conn.execute(f"INSERT INTO turns ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                               [row[c] for c in cols])
            return int(cur.lastrowid)

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


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for k in ("retrieved", "tool_calls", "cited", "guard"):
        if d.get(k):
            d[k] = json.loads(d[k])
    return d
