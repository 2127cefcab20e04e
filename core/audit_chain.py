"""Tamper evidence for the audit log (`core/audit.py`).

Each row of `turns` and `events` carries `hash`: the sha256 of the previous row's hash and this row's content,
so an edited, replaced or deleted row, or one slipped in anywhere, breaks the chain at that row; `verify` names
the first broken link. Triggers refuse UPDATE, DELETE and an INSERT on an id that exists (a REPLACE), so the
log cannot be changed through SQL while they stand.

What this cannot stop: someone who can write the file can drop the triggers, rewrite the rows and recompute
every hash, or delete the file. The defence is a copy elsewhere: `export` writes the rows as JSON lines (each
with its hash) for syslog or a SIEM, and the heads `verify` prints, noted outside, show whether the local chain
is still the one that was shipped.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.clock import now_iso

TABLES = ("turns", "events")
GUARDS = ("no_update", "no_delete", "no_reuse")
REFUSED = "audit log is append-only"

MARKER_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    since TEXT NOT NULL             -- when the rows began to be chained (older rows were hashed then, once)
);
CREATE TRIGGER IF NOT EXISTS audit_chain_no_update BEFORE UPDATE ON audit_chain
    BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END;
CREATE TRIGGER IF NOT EXISTS audit_chain_no_delete BEFORE DELETE ON audit_chain
    BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END;
"""


def guard_statements(table: str) -> list[str]:
    """The triggers that keep `table` append-only. The BEFORE INSERT one catches INSERT OR REPLACE whatever the
    connection's recursive_triggers setting (a REPLACE deletes without firing DELETE triggers otherwise)."""
    raise_ = f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} {raise_}",
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} {raise_}",
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_reuse BEFORE INSERT ON {table} "
        f"WHEN EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id) {raise_}",
    ]


def row_hash(prev: str, table: str, row: dict[str, Any]) -> str:
    """sha256 of the previous row's hash and this row's content: its non-NULL columns but `hash` (so a column
    added later, NULL in old rows, changes no hash), as canonical JSON with the table's name."""
    data = {k: v for k, v in row.items() if k != "hash" and v is not None}
    body = json.dumps([table, data], sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(prev.encode() + body.encode()).hexdigest()


def _stored_form(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> dict[str, Any]:
    """`row` as SQLite stores it in `table` (column affinity: 3 in a REAL column is 3.0, NaN is NULL), read back
    from a scratch copy of the table: the hash covers exactly what a later read returns."""
    scratch = f"_shape_{table}"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {scratch} AS SELECT * FROM main.{table} WHERE 0")
    cols = list(row)
    names = ", ".join(cols)
    conn.execute(f"INSERT INTO temp.{scratch} ({names}) VALUES ({', '.join('?' * len(cols))})",
                 [row[c] for c in cols])
    stored = dict(conn.execute(f"SELECT {names} FROM temp.{scratch}").fetchone())
    conn.execute(f"DELETE FROM temp.{scratch}")
    return stored


def _head(conn: sqlite3.Connection, table: str) -> tuple[int, str]:
    """The next id to use and the hash to chain to: ids are never reused, even of a row deleted at the end."""
    last = conn.execute(f"SELECT id, hash FROM {table} ORDER BY id DESC LIMIT 1").fetchone()
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    top = max(last[0] if last else 0, seq[0] if seq else 0)
    return top + 1, (last[1] or "") if last else ""


def append(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    """Insert `row` into `table` chained to the last row, in one write transaction (concurrent writers queue, so
    each chains to the row before it); returns its id. The caller commits."""
    conn.execute("BEGIN IMMEDIATE")
    new_id, prev = _head(conn, table)
    stored = _stored_form(conn, table, {"id": new_id, **row})
    stored["hash"] = row_hash(prev, table, stored)
    cols = list(stored)
    conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [stored[c] for c in cols])
    return new_id


def chained(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM audit_chain").fetchone() is not None


def _any_hashed(conn: sqlite3.Connection) -> bool:
    for table in TABLES:
        if "hash" in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")} and conn.execute(
                f"SELECT 1 FROM {table} WHERE hash IS NOT NULL LIMIT 1").fetchone():
            return True
    return False


def needs_migration(path: Path) -> bool:
    """Whether the log at `path` predates the chain (read-only check)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        has_marker = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_chain'").fetchone() is not None
        return not (has_marker and chained(conn)) and not _any_hashed(conn)
    finally:
        conn.close()


def migrate(conn: sqlite3.Connection) -> int:
    """Chain a log written before hashes existed, once (the `audit_chain` marker says it was done): its rows
    are hashed in id order as they stand now. Returns the number of rows hashed. The caller commits. A log
    holding hashed rows is never re-hashed, marker or not: that would launder edits."""
    conn.execute("BEGIN IMMEDIATE")
    if chained(conn):  # another process did it meanwhile
        return 0
    done = 0
    for table in TABLES if not _any_hashed(conn) else ():
        rows = [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
        if rows:
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")  # inside this transaction only
            prev = ""
            for row in rows:
                prev = row_hash(prev, table, row)
                conn.execute(f"UPDATE {table} SET hash = ? WHERE id = ?", (prev, row["id"]))
            conn.execute(guard_statements(table)[0])
            done += len(rows)
    conn.execute("INSERT INTO audit_chain (id, since) VALUES (1, ?)", (now_iso("milliseconds"),))
    return done


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)  # the first broken link of each table, missing triggers
    rows: dict[str, int] = field(default_factory=dict)
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)  # table -> (last id, its hash)

    @property
    def intact(self) -> bool:
        return not self.problems


def _first_break(conn: sqlite3.Connection, table: str, verdict: Verdict) -> str | None:
    prev, prev_id, n = "", 0, 0
    for r in conn.execute(f"SELECT * FROM {table} ORDER BY id"):
        row = dict(r)
        n += 1
        if row["id"] != prev_id + 1:
            missing = f"#{prev_id + 1}" + (f"-#{row['id'] - 1}" if row["id"] - 1 > prev_id + 1 else "")
            return f"{table} {missing} missing before #{row['id']}: rows were deleted"
        if not row.get("hash"):
            return f"{table} #{row['id']} has no hash: written around the log (not through the assistant)"
        if row_hash(prev, table, row) != row["hash"]:
            return (f"{table} #{row['id']}: its content or its link to #{prev_id} does not match its hash: the row "
                    "was edited or replaced, or one before it was")
        prev, prev_id = row["hash"], row["id"]
    verdict.rows[table] = n
    verdict.heads[table] = (prev_id, prev)
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    if seq and seq[0] > prev_id:
        return f"{table} #{prev_id + 1}-#{seq[0]} missing at the end: rows were deleted"
    return None


def verify(path: Path) -> Verdict:
    """Check the triggers and every link of the chain, read-only; the first broken link of each table."""
    verdict = Verdict()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        missing = sorted(f"{t}_{g}" for t in TABLES for g in GUARDS if f"{t}_{g}" not in triggers)
        if missing:
            verdict.problems.append(f"triggers dropped: {', '.join(missing)} (they refuse edits through SQL)")
        for table in TABLES:
            if problem := _first_break(conn, table, verdict):
                verdict.problems.append(problem)
    finally:
        conn.close()
    return verdict


def export(path: Path, after: dict[str, int] | None = None) -> Iterator[dict[str, Any]]:
    """Every row (after the given ids per table) as stored, hash included, oldest first, tagged with its table:
    lines to ship elsewhere, where the chain can be checked again with `row_hash`."""
    after = after or {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        for table in TABLES:
            for r in conn.execute(f"SELECT * FROM {table} WHERE id > ? ORDER BY id", (after.get(table, 0),)):
                yield {"table": table, **dict(r)}
    finally:
        conn.close()
