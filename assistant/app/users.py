"""Staff accounts: name, role, department and a salted scrypt password hash (never the password)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from assistant.app.db import connect, now_iso
from core.errors import AssistantError
from core.identity import User

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MIN_PASSWORD = 8
# scrypt cost: ~50 ms and 16 MiB per check on a laptop core; slows offline guessing, not a login
N, R, P = 2**14, 8, 1

# the demo's accounts, created by the quickstart (`assistant users demo`) and printed with the UI's URL
DEMO_USERS = [
    ("admin", "admin-demo-2026", "admin", "operations"),
    ("li.claims", "claims-demo-2026", "claims", "claims"),
    ("wang.staff", "staff-demo-2026", "staff", "sales"),
]


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    department: str | None
    created: str

    @property
    def user(self) -> User:
        return User(self.name, self.role, self.department)


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt${N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def _check(name: str, password: str, role: str, department: str | None) -> None:
    if not NAME.match(name):
        raise AssistantError(f"user name '{name}': use 1-64 letters, digits, '.', '_', '-' or '@'")
    if not ROLE.match(role):
        raise AssistantError(f"role '{role}': use a lowercase word such as staff, claims, underwriting, admin")
    if department is not None and not ROLE.match(department):
        raise AssistantError(f"department '{department}': use a lowercase word such as claims, sales, hr")
    if len(password) < MIN_PASSWORD:
        raise AssistantError(f"password for '{name}' is too short: at least {MIN_PASSWORD} characters")


def add_user(db: Path, name: str, password: str, role: str = "staff", department: str | None = None,
             replace: bool = False) -> Account:
    _check(name, password, role, department)
    account = Account(name, role, department, now_iso())
    with connect(db) as conn:
        try:
            conn.execute(
                f"INSERT {'OR REPLACE ' if replace else ''}INTO users (name, password_hash, role, department, created) "
                "VALUES (?, ?, ?, ?, ?)", (name, hash_password(password), role, department, account.created))
        except sqlite3.IntegrityError:
            raise AssistantError(f"user '{name}' exists; remove it first or use --replace") from None
    return account


def get_user(db: Path, name: str) -> Account | None:
    with connect(db) as conn:
        row = conn.execute("SELECT name, role, department, created FROM users WHERE name = ?", (name,)).fetchone()
    return Account(**dict(row)) if row else None


def list_users(db: Path) -> list[Account]:
    with connect(db) as conn:
        rows = conn.execute("SELECT name, role, department, created FROM users ORDER BY name").fetchall()
    return [Account(**dict(r)) for r in rows]


def remove_user(db: Path, name: str) -> None:
    with connect(db) as conn:
        if conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
            raise AssistantError(f"no user '{name}' (see `assistant users list`)")
        admins = conn.execute("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetchone()[0]
        if admins == 0 and conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] > 0:
            raise AssistantError(f"'{name}' is the last admin; add another admin first")  # rolls back


def authenticate(db: Path, name: str, password: str) -> Account | None:
    """The account when name and password match, else None (the same answer for an unknown name)."""
    with connect(db) as conn:
        row = conn.execute("SELECT * FROM users WHERE name = ?", (name.strip(),)).fetchone()
    if row is None:
        verify_password(password, hash_password("timing-equaliser"))  # unknown names take as long
        return None
    if not verify_password(password, row["password_hash"]):
        return None
    return Account(row["name"], row["role"], row["department"], row["created"])


def ensure_demo_users(db: Path) -> list[tuple[str, str, str, str]]:
    """Create the demo accounts that do not exist yet (existing passwords are left alone)."""
    made = []
    for name, password, role, dept in DEMO_USERS:
        if get_user(db, name) is None:
            add_user(db, name, password, role, dept)
            made.append((name, password, role, dept))
    return made
