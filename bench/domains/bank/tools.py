"""Northgate Savings Bank: look-up tools over the lending system's records (a tool plug-in).

    ASSISTANT_TOOLS='["bench.domains.bank.tools:tools"]'

The plug-in keeps its own SQLite database, `$ASSISTANT_HOME/northgate_lending.db`, created and seeded on first
use (a copy of a few records from the loan origination system, enough for the benchmark's questions).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import BaseTool
from pydantic import Field

from assistant.tools.registry import business_tool

DB_NAME = "northgate_lending.db"
SEED_VERSION = "2025-05-06"

# Loan applications. status: received | valuation | underwriting | referred | committee | approved |
# offer_issued | completed | declined | withdrawn
APPLICATIONS: list[dict[str, Any]] = [
    {"application_id": "LN-250107", "customer_id": "CU-100215", "product": "Residential mortgage (purchase)",
     "amount": 240000, "term_months": 300, "status": "completed", "submitted": "2025-01-07",
     "updated": "2025-02-20", "approver": "Mortgage Underwriter", "note": "Completed 20 Feb 2025"},
    {"application_id": "LN-250214", "customer_id": "CU-100482", "product": "Residential mortgage (remortgage)",
     "amount": 620000, "term_months": 240, "status": "offer_issued", "submitted": "2025-02-14",
     "updated": "2025-03-11", "approver": "Head of Retail Credit", "note": "Offer valid until 11 Sep 2025"},
    {"application_id": "LN-250301", "customer_id": "CU-100733", "product": "Personal loan", "amount": 12000,
     "term_months": 60, "status": "approved", "submitted": "2025-03-01", "updated": "2025-03-03",
     "approver": "Lending Underwriter", "note": "Agreement sent for signature"},
    {"application_id": "LN-250318", "customer_id": "CU-100215", "product": "Personal loan (home improvement)",
     "amount": 30000, "term_months": 96, "status": "referred", "submitted": "2025-03-18",
     "updated": "2025-03-19", "approver": "Personal Lending Manager", "note": "Awaiting payslips"},
    {"application_id": "LN-250322", "customer_id": "CU-100561", "product": "Buy-to-let mortgage",
     "amount": 210000, "term_months": 300, "status": "underwriting", "submitted": "2025-03-22",
     "updated": "2025-04-02", "approver": "Mortgage Underwriter", "note": "Rental assessment in progress"},
    {"application_id": "LN-250377", "customer_id": "CU-100904", "product": "Residential mortgage (purchase)",
     "amount": 185000, "term_months": 360, "status": "valuation", "submitted": "2025-04-03",
     "updated": "2025-04-08", "approver": "Mortgage Underwriter", "note": "Valuation booked for 15 Apr 2025"},
    {"application_id": "LN-250402", "customer_id": "CU-100648", "product": "Credit card", "amount": 4000,
     "term_months": None, "status": "declined", "submitted": "2025-04-02", "updated": "2025-04-02",
     "approver": "Decision engine", "note": "Behavioural score below 550"},
    {"application_id": "LN-250415", "customer_id": "CU-100733", "product": "Arranged overdraft", "amount": 1500,
     "term_months": None, "status": "withdrawn", "submitted": "2025-04-15", "updated": "2025-04-17",
     "approver": None, "note": "Withdrawn by the customer"},
    {"application_id": "LN-250429", "customer_id": "CU-100390", "product": "Residential mortgage (purchase)",
     "amount": 1150000, "term_months": 240, "status": "committee", "submitted": "2025-04-29",
     "updated": "2025-05-02", "approver": "Retail Credit Committee", "note": "Listed for the committee of 13 May 2025"},
    {"application_id": "LN-250503", "customer_id": "CU-100561", "product": "Personal loan", "amount": 8500,
     "term_months": 48, "status": "received", "submitted": "2025-05-03", "updated": "2025-05-03",
     "approver": None, "note": "Awaiting credit search"},
]

# Customers. tier: standard | silver | gold | platinum; account_status: active | in_arrears | closed
CUSTOMERS: list[dict[str, Any]] = [
    {"customer_id": "CU-100215", "name": "Daniel Okafor", "tier": "gold", "behavioural_score": 812,
     "total_balances": 64200, "lending_exposure": 238900, "account_status": "active", "customer_since": "2014-06-02"},
    {"customer_id": "CU-100390", "name": "Helen Marsh", "tier": "platinum", "behavioural_score": 880,
     "total_balances": 412000, "lending_exposure": 0, "account_status": "active", "customer_since": "2009-11-17"},
    {"customer_id": "CU-100482", "name": "Priya Natarajan", "tier": "platinum", "behavioural_score": 845,
     "total_balances": 268500, "lending_exposure": 15000, "account_status": "active", "customer_since": "2012-03-08"},
    {"customer_id": "CU-100561", "name": "Tom Whitfield", "tier": "silver", "behavioural_score": 702,
     "total_balances": 13800, "lending_exposure": 4100, "account_status": "active", "customer_since": "2020-09-21"},
    {"customer_id": "CU-100648", "name": "Aisha Rahman", "tier": "standard", "behavioural_score": 531,
     "total_balances": 640, "lending_exposure": 2350, "account_status": "in_arrears", "customer_since": "2022-01-14"},
    {"customer_id": "CU-100733", "name": "Liam Doherty", "tier": "standard", "behavioural_score": 688,
     "total_balances": 2900, "lending_exposure": 0, "account_status": "active", "customer_since": "2023-07-30"},
    {"customer_id": "CU-100904", "name": "Sophie Clarke", "tier": "silver", "behavioural_score": 744,
     "total_balances": 18250, "lending_exposure": 0, "account_status": "active", "customer_since": "2018-05-11"},
    {"customer_id": "CU-101027", "name": "Marek Nowak", "tier": "gold", "behavioural_score": 790,
     "total_balances": 51700, "lending_exposure": 96400, "account_status": "active", "customer_since": "2016-10-03"},
]

STATUS_LABEL = {
    "received": "Received", "valuation": "Awaiting valuation", "underwriting": "With underwriter",
    "referred": "Referred for manual approval", "committee": "Awaiting Retail Credit Committee",
    "approved": "Approved - awaiting signature", "offer_issued": "Offer issued", "completed": "Completed",
    "declined": "Declined", "withdrawn": "Withdrawn",
    "active": "Active", "in_arrears": "In arrears", "closed": "Closed",
}
TIER_LABEL = {"standard": "Standard", "silver": "Silver", "gold": "Gold", "platinum": "Platinum"}

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE applications (application_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, product TEXT NOT NULL,
    amount INTEGER NOT NULL, term_months INTEGER, status TEXT NOT NULL, submitted TEXT, updated TEXT,
    approver TEXT, note TEXT);
CREATE TABLE customers (customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL,
    behavioural_score INTEGER, total_balances INTEGER, lending_exposure INTEGER, account_status TEXT NOT NULL,
    customer_since TEXT);
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def _seeded(path: Path) -> bool:
    try:
        conn = _connect(path)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'seed_version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return row is not None and row["value"] == SEED_VERSION


def ensure_db(home: Path) -> Path:
    """The plug-in's database under `home`, created (or replaced, when seeded by another version) once. Built beside
    the target and renamed in, so a reader never sees half a database."""
    path = Path(home) / DB_NAME
    if path.exists() and _seeded(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}-{uuid.uuid4().hex[:8]}")
    conn = _connect(tmp)
    try:
        with conn:
            conn.executescript(SCHEMA)
            for table, rows in (("applications", APPLICATIONS), ("customers", CUSTOMERS)):
                cols = list(rows[0])
                conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 [tuple(r[c] for c in cols) for r in rows])
            conn.execute("INSERT INTO meta VALUES ('seed_version', ?)", (SEED_VERSION,))
    finally:
        conn.close()
    os.replace(tmp, path)
    return path


def _one(db: Path, sql: str, key: str) -> dict[str, Any] | None:
    conn = _connect(db)
    try:
        row = conn.execute(sql, (key.strip().upper(),)).fetchone()
    finally:
        conn.close()
    return dict(row) if row is not None else None


def lending_tools(db: Path) -> list[BaseTool]:
    @business_tool(route={"application_id": r"(?<![A-Za-z0-9])LN-\d{6}(?!\d)"})
    def get_loan_application(application_id: Annotated[str, Field(description="e.g. LN-250214")]) -> dict:
        """Loan application status, product, amount and approver (mortgages, personal loans, cards, overdrafts)"""
        row = _one(db, "SELECT * FROM applications WHERE application_id = ?", application_id)
        if row is None:
            return {"error": f"not found: no loan application {application_id.strip().upper()}"}
        row["status_label"] = STATUS_LABEL.get(row["status"], row["status"])
        return row

    @business_tool(roles={"underwriter", "credit_risk"}, route={"customer_id": r"(?<![A-Za-z0-9])CU-\d{6}(?!\d)"})
    def get_customer_credit_profile(customer_id: Annotated[str, Field(description="e.g. CU-100215")]) -> dict:
        """A customer's relationship tier, behavioural score, balances and lending exposure"""
        row = _one(db, "SELECT * FROM customers WHERE customer_id = ?", customer_id)
        if row is None:
            return {"error": f"not found: no customer {customer_id.strip().upper()}"}
        row["tier_label"] = TIER_LABEL.get(row["tier"], row["tier"])
        row["account_status_label"] = STATUS_LABEL.get(row["account_status"], row["account_status"])
        return row

    return [get_loan_application, get_customer_credit_profile]


def tools(settings: Any) -> list[BaseTool]:
    """The plug-in: Northgate's look-up tools over the database under `settings.home`."""
    return lending_tools(ensure_db(Path(settings.home)))
