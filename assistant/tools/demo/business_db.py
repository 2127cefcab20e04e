"""The demo business database (SQLite): customers, policies, claims, orders and an email outbox,
seeded from `assistant.tools.demo.data` so it agrees with `corpus/` and the domain training set."""

from __future__ import annotations

import os
import sqlite3
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

from assistant.tools.demo.data import CLAIMS, CUSTOMERS, ORDERS, POLICIES
from core import db

SCHEMA = """
CREATE TABLE customers (customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, phone TEXT, email TEXT);
CREATE TABLE policies (policy_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers,
    product TEXT NOT NULL, status TEXT NOT NULL, sum_insured INTEGER, premium INTEGER, start_date TEXT, end_date TEXT);
CREATE TABLE claims (claim_id TEXT PRIMARY KEY, policy_id TEXT NOT NULL REFERENCES policies, type TEXT NOT NULL,
    status TEXT NOT NULL, amount_claimed INTEGER, amount_paid INTEGER, reported TEXT, updated TEXT);
CREATE TABLE orders (order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers, item TEXT,
    status TEXT NOT NULL, amount INTEGER, created TEXT);
CREATE TABLE outbox (draft_id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by TEXT, recipient TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'draft');
"""


def connect(path: Path) -> AbstractContextManager[sqlite3.Connection]:
    """A connection in one transaction, closed afterwards (tools run on worker threads)."""
    return db.connect(path, check_same_thread=False, local=True)  # the company's own system: never app state


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict]) -> None:
    cols = list(rows[0])
    conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                     [tuple(r[c] for c in cols) for r in rows])


def ensure_business_db(path: Path) -> Path:
    """Create and seed the database once; built beside the target and renamed in, so never half-made."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}-{uuid.uuid4().hex[:6]}")
    with connect(tmp) as conn:
        conn.executescript(SCHEMA)
        _insert(conn, "customers", CUSTOMERS)
        _insert(conn, "policies", POLICIES)
        _insert(conn, "claims", CLAIMS)
        _insert(conn, "orders", ORDERS)
    os.replace(tmp, path)
    return path
