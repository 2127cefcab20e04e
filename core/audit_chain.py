"""Tamper evidence for the audit log (`core/audit.py`).

Each row of `turns` and `events` carries `hash`: the sha256 of the previous row's hash and this row's content,
so an edited, replaced or deleted row, or one slipped in anywhere, breaks the chain at that row; `verify` names
the first broken link. Triggers refuse UPDATE, DELETE and an INSERT on an id that exists (a REPLACE), so the
log cannot be changed through SQL while they stand.

On PostgreSQL (`ASSISTANT_DATABASE_URL`) the same rows live in the schema `audit`: plpgsql triggers refuse UPDATE,
DELETE and TRUNCATE (an INSERT on an existing id fails on the primary key, and PostgreSQL has no REPLACE), and an
advisory lock per table orders concurrent appenders (any process, any node), so the chain never forks. A row
deleted at the very end shows there only in the heads noted outside (PostgreSQL keeps no sqlite_sequence).

What this cannot stop: someone who can write the file can drop the triggers, rewrite the rows and recompute
every hash, or delete the file. The defence is a copy elsewhere: `export` writes the rows as JSON lines (each
with its hash) for syslog or a SIEM, and the heads `verify` prints, noted outside, show whether the local chain
is still the one that was shipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import db
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


# PostgreSQL: one function refuses; a trigger per table and operation calls it (names as SQLite's, checked by verify)
PG_GUARDS = ("no_update", "no_delete", "no_truncate")
PG_MARKER_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    since TEXT NOT NULL
);
"""


def pg_guard_schema() -> str:
    """The plpgsql function and triggers that keep the audit tables (and the chain's marker) append-only."""
    fn = (f"CREATE OR REPLACE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
          f"RAISE EXCEPTION '{REFUSED}' USING ERRCODE = 'insufficient_privilege'; END $$;\n")
    return fn + "".join(f"{s};\n" for table in (*TABLES, "audit_chain") for s in pg_guard_statements(table))


def pg_guard_statements(table: str) -> list[str]:
    each = "FOR EACH ROW EXECUTE FUNCTION audit_refuse()"
    return [f"CREATE OR REPLACE TRIGGER {table}_no_update BEFORE UPDATE ON {table} {each}",
            f"CREATE OR REPLACE TRIGGER {table}_no_delete BEFORE DELETE ON {table} {each}",
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse()"]


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


def _stored_form(conn: Any, table: str, row: dict[str, Any]) -> dict[str, Any]:
    """`row` as the database stores it in `table` (SQLite's column affinity: 3 in a REAL column is 3.0, NaN is
    NULL; PostgreSQL's casts), read back from a scratch copy of the table: the hash covers exactly what a later
    read returns."""
    scratch = f"_shape_{table}"
    sqlite = db.dialect(conn) == "sqlite"
    if sqlite:
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {scratch} AS SELECT * FROM main.{table} WHERE 0")
    else:  # pg_temp is searched first: the scratch table never meets the audit tables' names
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {scratch} AS SELECT * FROM {table} WHERE false")
    where = f"temp.{scratch}" if sqlite else f"pg_temp.{scratch}"
    cols = list(row)
    names = ", ".join(cols)
    conn.execute(f"INSERT INTO {where} ({names}) VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols])
    stored = dict(conn.execute(f"SELECT {names} FROM {where}").fetchone())
    conn.execute(f"DELETE FROM {where}")
    return stored


def _sequence(conn: Any, table: str) -> int:
    """SQLite's highest id ever given in `table` (a row deleted at the end leaves it behind); 0 on PostgreSQL."""
    if db.dialect(conn) != "sqlite":
        return 0
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return seq[0] if seq else 0


def _head(conn: Any, table: str) -> tuple[int, str]:
    """The next id to use and the hash to chain to: ids are never reused, even of a row deleted at the end."""
    last = conn.execute(f"SELECT id, hash FROM {table} ORDER BY id DESC LIMIT 1").fetchone()
    top = max(last[0] if last else 0, _sequence(conn, table))
    return top + 1, (last[1] or "") if last else ""


def append(conn: Any, table: str, row: dict[str, Any]) -> int:
    """Insert `row` into `table` chained to the last row, in one write transaction; returns its id. The caller
    commits. Invariant: the head is read under the table's write lock, held until that commit, so concurrent
    writers (threads, processes, nodes) queue and each chains to the row committed before it."""
    db.begin_write(conn, table)
    new_id, prev = _head(conn, table)
    stored = _stored_form(conn, table, {"id": new_id, **row})
    stored["hash"] = row_hash(prev, table, stored)
    cols = list(stored)
    conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [stored[c] for c in cols])
    return new_id


def chained(conn: Any) -> bool:
    return conn.execute("SELECT 1 FROM audit_chain").fetchone() is not None


def _columns(conn: Any, table: str) -> set[str]:
    if db.dialect(conn) == "sqlite":
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    return {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                       "current_schema() AND table_name = ?", (table,))}


def _any_hashed(conn: Any) -> bool:
    for table in TABLES:
        if "hash" in _columns(conn, table) and conn.execute(
                f"SELECT 1 FROM {table} WHERE hash IS NOT NULL LIMIT 1").fetchone():
            return True
    return False


def needs_migration(path: Path) -> bool:
    """Whether the log at `path` predates the chain (read-only check)."""
    with db.connect_readonly(path) as conn:
        if db.dialect(conn) == "sqlite":
            has_marker = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_chain'").fetchone() is not None
        else:
            has_marker = conn.execute("SELECT to_regclass('audit_chain')").fetchone()[0] is not None
        return not (has_marker and chained(conn)) and not _any_hashed(conn)


def migrate(conn: Any) -> int:
    """Chain a log written before hashes existed, once (the `audit_chain` marker says it was done): its rows
    are hashed in id order as they stand now. Returns the number of rows hashed. The caller commits. A log
    holding hashed rows is never re-hashed, marker or not: that would launder edits."""
    db.begin_write(conn, "migrate")
    if chained(conn):  # another process did it meanwhile
        return 0
    done = 0
    # PostgreSQL's audit schema was made with the chain: nothing there predates it
    for table in TABLES if db.dialect(conn) == "sqlite" and not _any_hashed(conn) else ():
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


def _first_break(conn: Any, table: str, verdict: Verdict) -> str | None:
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
    if (seq := _sequence(conn, table)) > prev_id:
        return f"{table} #{prev_id + 1}-#{seq} missing at the end: rows were deleted"
    return None


def verify(path: Path) -> Verdict:
    """Check the triggers and every link of the chain, read-only; the first broken link of each table."""
    verdict = Verdict()
    with db.connect_readonly(path) as conn:
        guards = GUARDS if db.dialect(conn) == "sqlite" else PG_GUARDS
        triggers = _triggers(conn)
        missing = sorted(f"{t}_{g}" for t in TABLES for g in guards if f"{t}_{g}" not in triggers)
        if missing:
            verdict.problems.append(f"triggers dropped or disabled: {', '.join(missing)} (they refuse edits "
                                    "through SQL)")
        for table in TABLES:
            if problem := _first_break(conn, table, verdict):
                verdict.problems.append(problem)
    return verdict


def _triggers(conn: Any) -> set[str]:
    """The names of the guard triggers that stand (on PostgreSQL: and are enabled)."""
    if db.dialect(conn) == "sqlite":
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    return {r[0] for r in conn.execute(
        "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON "
        "n.oid = c.relnamespace WHERE n.nspname = current_schema() AND NOT t.tgisinternal AND t.tgenabled <> 'D'")}


def export(path: Path, after: dict[str, int] | None = None) -> Iterator[dict[str, Any]]:
    """Every row (after the given ids per table) as stored, hash included, oldest first, tagged with its table:
    lines to ship elsewhere, where the chain can be checked again with `row_hash`."""
    after = after or {}
    with db.connect_readonly(path) as conn:
        for table in TABLES:
            for r in conn.execute(f"SELECT * FROM {table} WHERE id > ? ORDER BY id", (after.get(table, 0),)):
                yield {"table": table, **dict(r)}
