"""Staff accounts: name, role, department and a salted scrypt password hash (never the password); password
rules fit for staff accounts; logins throttled per account and per client address in the database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from assistant.app.db import connect
from core import db as core_db
from core.clock import now_iso
from core.errors import AssistantError
from core.identity import User

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MIN_PASSWORD = 10
# scrypt cost: ~50 ms and 16 MiB per check on a laptop core; slows offline guessing, not a login
N, R, P = 2**14, 8, 1

# the demo's accounts, created by the quickstart (`assistant users demo`). These documented passwords are used
# only with `--demo-passwords` (and by the tests); by default each account gets a random one, printed once.
DEMO_USERS = [
    ("admin", "operations-demo-2026", "admin", "operations"),
    ("li.claims", "claims-demo-2026", "claims", "claims"),
    ("wang.staff", "staff-demo-2026", "staff", "sales"),
]


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    department: str | None
    created: str
    must_change: bool = False  # the next login must set a new password first

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


def normalise_tag(value: str | None) -> str | None:
    """Roles and departments are case-insensitive everywhere ("HR" is "hr"): one spelling is stored."""
    value = (value or "").strip().lower()
    return value or None


@cache
def _common_passwords() -> frozenset[str]:
    text = (Path(__file__).with_name("common_passwords.txt")).read_text(encoding="utf-8")
    return frozenset(w for w in text.splitlines() if w and not w.startswith("#"))


PASSWORD_RULE = (f"At least {MIN_PASSWORD} characters, not only spaces, not one character or a short piece repeated "
                 "(aaaaaaaaaa, passwordpassword), not a common password or one made of keyboard runs, years and "
                 "common words (qwerty, 123456, password2026), and not containing the user name in any case or "
                 "letter width. Three or four unrelated words make a good one.")

# keyboard rows and columns, the alphabet and the digits: 3+ consecutive characters of one (either way) are a pattern
_SEQUENCES = ("`1234567890-=", "qwertyuiop[]", "asdfghjkl;'", "zxcvbnm,./", "abcdefghijklmnopqrstuvwxyz",
              "1qaz", "2wsx", "3edc", "4rfv", "5tgb", "6yhn", "7ujm", "8ik,", "9ol.", "0p;/")
_WORDS = ("password", "passwort", "passw0rd", "pass", "admin", "administrator", "welcome", "letmein", "login",
          "iloveyou", "secret", "changeme", "default", "qwerty", "azerty", "monkey", "dragon", "master", "football",
          "baseball", "sunshine", "princess", "superman", "summer", "winter", "spring", "autumn", "hello", "test",
          "guest", "user", "root", "company", "office", "insurance", "woaini", "mima", "china", "beijing", "shanghai")
_YEAR = re.compile(r"(?:19|20)\d\d")
_MIN_LEFT = 4  # letters or digits that must remain once the patterns are taken out


def _fold(text: str) -> str:
    """The form a comparison sees: full-width and other compatibility letters as plain ones (NFKC), any case."""
    return unicodedata.normalize("NFKC", text).casefold()


def _without_patterns(text: str) -> str:
    """`text` (folded) with keyboard and alphabet runs, years, runs of one character and common words removed."""
    for word in sorted(_WORDS, key=len, reverse=True):
        text = text.replace(word, " ")
    text = _YEAR.sub(" ", text)
    text = re.sub(r"(.)\1{2,}", " ", text)
    keep = [True] * len(text)
    for i in range(len(text) - 2):
        piece = text[i:i + 3]
        if any(piece in seq or piece in seq[::-1] for seq in _SEQUENCES):
            keep[i] = keep[i + 1] = keep[i + 2] = False
    return "".join(c for c, k in zip(text, keep, strict=True) if k)


def password_problem(name: str, password: str) -> str | None:
    """Why `password` is not good enough for staff account `name`, or None (the rule: PASSWORD_RULE)."""
    if not password.strip():
        return "it is only whitespace"
    if len(password) < MIN_PASSWORD:
        return f"too short: at least {MIN_PASSWORD} characters"
    low, folded_name = _fold(password), _fold(name.strip())
    bare_name = re.sub(r"[\W_]+", "", folded_name)
    if folded_name and (folded_name in low or (len(bare_name) >= 4 and bare_name in re.sub(r"[\W_]+", "", low))):
        return "it contains the user name"
    # "Password2026!" is "password" with decoration: strip trailing digits and symbols before the look-up
    core = re.sub(r"[\W\d_]+$", "", low)
    if low in _common_passwords() or (len(core) >= 4 and core in _common_passwords()):
        return "it is a commonly used password"
    if len(set(low)) < 4:
        return f"it repeats too few characters ({len(set(low))} different)"
    if unit := re.fullmatch(r"(.+?)\1+", low):
        return f"it is '{unit.group(1)}' repeated"
    if len(re.sub(r"[\W_]+", "", _without_patterns(low))) < _MIN_LEFT:
        return "it is made of keyboard runs, years and common words (qwerty, 12345, password2026)"
    return None


def check_password(name: str, password: str) -> None:
    problem = password_problem(name, password)
    if problem:
        raise AssistantError(f"password for '{name}' is refused: {problem}. {PASSWORD_RULE}")


def _check(name: str, role: str, department: str | None) -> None:
    if not NAME.match(name):
        raise AssistantError(f"user name '{name}': use 1-64 letters, digits, '.', '_', '-' or '@'")
    if not ROLE.match(role):
        raise AssistantError(f"role '{role}': use a lowercase word such as staff, claims, underwriting, admin")
    if department is not None and not ROLE.match(department):
        raise AssistantError(f"department '{department}': use a lowercase word such as claims, sales, hr")


def _account(row: sqlite3.Row) -> Account:
    return Account(row["name"], normalise_tag(row["role"]) or "", normalise_tag(row["department"]), row["created"],
                   bool(row["must_change"]))


def add_user(db: Path, name: str, password: str, role: str = "staff", department: str | None = None,
             replace: bool = False, must_change: bool = False) -> Account:
    """Create (or with `replace` overwrite) an account; `must_change`: its first login sets a new password."""
    name = name.strip()
    role, department = normalise_tag(role) or "", normalise_tag(department)
    _check(name, role, department)
    check_password(name, password)
    account = Account(name, role, department, now_iso(), must_change)
    with connect(db) as conn:
        try:
            conn.execute(
                "INSERT INTO users (name, password_hash, role, department, created, must_change) "
                "VALUES (?, ?, ?, ?, ?, ?)" + (" ON CONFLICT (name) DO UPDATE SET password_hash = "
                                               "excluded.password_hash, role = excluded.role, department = "
                                               "excluded.department, created = excluded.created, must_change = "
                                               "excluded.must_change" if replace else ""),
                (name, hash_password(password), role, department, account.created, int(must_change)))
        except sqlite3.IntegrityError:
            raise AssistantError(f"user '{name}' exists; remove it first or use --replace") from None
    return account


def get_user(db: Path, name: str) -> Account | None:
    with connect(db) as conn:
        row = conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
    return _account(row) if row else None


def list_users(db: Path) -> list[Account]:
    with connect(db) as conn:
        rows = conn.execute("SELECT * FROM users ORDER BY name").fetchall()
    return [_account(r) for r in rows]


def _keep_an_admin(conn: sqlite3.Connection, name: str) -> None:
    admins = conn.execute("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetchone()[0]
    if admins == 0 and conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] > 0:
        raise AssistantError(f"'{name}' is the last admin; add another admin first")  # rolls back


def remove_user(db: Path, name: str) -> None:
    with connect(db) as conn:
        if conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
            raise AssistantError(f"no user '{name}' (see `assistant users list`)")
        _keep_an_admin(conn, name)


def set_role(db: Path, name: str, role: str, department: str | None) -> Account:
    """Change an account's role and department (its open sessions end at their next step)."""
    role, department = normalise_tag(role) or "", normalise_tag(department)
    _check(name, role, department)
    with connect(db) as conn:
        was = conn.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
        if was is None:
            raise AssistantError(f"no user '{name}' (see `assistant users list`)")
        conn.execute("UPDATE users SET role = ?, department = ? WHERE name = ?", (role, department, name))
        if was["role"] == "admin":
            _keep_an_admin(conn, name)
    return get_user(db, name)  # type: ignore[return-value]


def set_password(db: Path, name: str, password: str, must_change: bool = False) -> None:
    """A new password (checked against the rules); `must_change` makes the next login replace it."""
    check_password(name, password)
    with connect(db) as conn:
        if conn.execute("UPDATE users SET password_hash = ?, must_change = ? WHERE name = ?",
                        (hash_password(password), int(must_change), name)).rowcount == 0:
            raise AssistantError(f"no user '{name}' (see `assistant users list`)")


@cache
def _dummy_hash() -> str:
    """A hash of no account's password, made once per process, that an unknown name is checked against."""
    return hash_password(secrets.token_urlsafe(16))


def authenticate(db: Path, name: str, password: str) -> Account | None:
    """The account when name and password match, else None (the same answer for an unknown name).
    Not throttled: the login page uses `login`, which is."""
    with connect(db) as conn:
        row = conn.execute("SELECT * FROM users WHERE name = ?", (name.strip(),)).fetchone()
    if row is None:
        verify_password(password, _dummy_hash())  # one scrypt, as for a wrong password: names cannot be told apart
        return None
    if not verify_password(password, row["password_hash"]):
        return None
    return _account(row)


# Throttling: FREE_FAILURES failed logins for an account (FREE_FAILURES_ADDR from one client address, which
# may be shared by many staff behind one proxy) lock that key for BACKOFF_S, each further failure for twice as
# long, up to MAX_LOCK_S. A quiet FORGET_S since the last failure starts the count afresh.
FREE_FAILURES, FREE_FAILURES_ADDR = 5, 20
BACKOFF_S, MAX_LOCK_S, FORGET_S = 60.0, 3600.0, 86400.0


class LoginThrottled(AssistantError):
    def __init__(self, wait_s: float) -> None:
        super().__init__(f"Too many failed attempts. Wait {max(1, round(wait_s))} s and try again.")
        self.wait_s = wait_s


def _throttle_keys(name: str, address: str | None) -> list[tuple[str, int]]:
    return [(f"user:{name.strip().lower()}", FREE_FAILURES), (f"addr:{address or 'local'}", FREE_FAILURES_ADDR)]


def login(db: Path, name: str, password: str, address: str | None = None,
          now: float | None = None) -> Account | None:
    """Throttled login: the account, None for a wrong name or password, or LoginThrottled while the account or
    the client address is locked (nothing is checked then, so a locked key tells a guesser nothing).

    The attempt is counted as a failure before the password is checked, in one write transaction, so parallel
    sessions cannot all slip through the same free attempt; a success takes it back."""
    now = time.time() if now is None else now
    keys = _throttle_keys(name, address)
    with connect(db) as conn:
        core_db.begin_write(conn, "login_throttle")  # check and count atomically across processes, threads and nodes
        wait = 0.0
        for key, _ in keys:
            row = conn.execute("SELECT locked_until FROM login_throttle WHERE key = ?", (key,)).fetchone()
            if row and row["locked_until"] > now:
                wait = max(wait, row["locked_until"] - now)
        if wait:
            raise LoginThrottled(wait)
        for key, free in keys:
            row = conn.execute("SELECT failures, last_failure FROM login_throttle WHERE key = ?", (key,)).fetchone()
            failures = 1 if row is None or now - row["last_failure"] > FORGET_S else row["failures"] + 1
            lock = min(BACKOFF_S * 2 ** (failures - free), MAX_LOCK_S) if failures >= free else 0.0
            conn.execute("INSERT INTO login_throttle (key, failures, last_failure, locked_until) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, "
                         "last_failure = excluded.last_failure, locked_until = excluded.locked_until",
                         (key, failures, now, now + lock))
    account = authenticate(db, name, password)
    if account is not None:
        with connect(db) as conn:  # the account's count starts afresh; the address gets its attempt back
            conn.execute("DELETE FROM login_throttle WHERE key = ?", (keys[0][0],))
            conn.execute("UPDATE login_throttle SET failures = failures - 1, locked_until = "
                         "CASE WHEN failures - 1 < ? THEN 0 ELSE locked_until END WHERE key = ?",
                         (FREE_FAILURES_ADDR, keys[1][0]))
    return account


def ensure_demo_users(db: Path, random_passwords: bool = False,
                      admin_must_change: bool = False) -> list[tuple[str, str, str, str]]:
    """Create the demo accounts that do not exist yet (existing passwords are left alone); returns those made
    with their passwords. `random_passwords`: fresh random ones instead of the documented DEMO_USERS ones."""
    made = []
    for name, password, role, dept in DEMO_USERS:
        if get_user(db, name) is None:
            if random_passwords:
                password = secrets.token_urlsafe(12)
                while password_problem(name, password):  # the rules hold for random ones too
                    password = secrets.token_urlsafe(12)
            add_user(db, name, password, role, dept, must_change=admin_must_change and role == "admin")
            made.append((name, password, role, dept))
    return made
