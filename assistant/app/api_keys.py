"""API keys: each acts as its user (role and department as in the chat, read on every request), stored as the
sha256 of a random secret (shown once), with scopes, an expiry, a request rate and a daily token quota.

A key reads `da-<id>.<secret>`: the id is public (lists, audit, usage), the secret is 256 random bits. Limits are
kept in the app database, so every server process on the machine counts the same requests:
- requests per minute over a sliding window (this minute's count plus the previous minute's, weighted by how much
  of it still lies within the last 60 s);
- tokens per UTC day: a request is refused once the day's tokens reached the quota (the answer that crosses it is
  finished and counted).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from assistant.app.db import connect
from assistant.app.users import Account, get_user
from core import db as core_db
from core.clock import now_iso
from core.errors import AssistantError

SCOPES = ("chat", "retrieve")
PREFIX = "da-"


class KeyRejected(AssistantError):
    """The key is unknown, revoked, expired, of a removed account, or lacks the scope."""


class LimitExceeded(AssistantError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s + 0.999))


@dataclass(frozen=True)
class ApiKey:
    id: str
    user: str
    label: str | None
    scopes: tuple[str, ...]
    rpm: int
    daily_tokens: int
    created: str
    expires: float | None
    revoked: float | None
    last_used: float | None

    @property
    def state(self) -> str:
        if self.revoked:
            return "revoked"
        return "expired" if self.expires and self.expires <= time.time() else "active"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: object) -> ApiKey:
    r = dict(row)  # type: ignore[call-overload]
    return ApiKey(r["id"], r["user"], r["label"], tuple(s for s in r["scopes"].split(",") if s), r["rpm"],
                  r["daily_tokens"], r["created"], r["expires"], r["revoked"], r["last_used"])


def parse_expiry(text: str | None) -> float | None:
    """'30d', '12h', '2027-01-31' (UTC midnight) or None -> unix time."""
    if not text:
        return None
    text = text.strip()
    units = {"d": 86400, "h": 3600, "m": 60}
    if text[:-1].isdigit() and text[-1] in units:
        return time.time() + int(text[:-1]) * units[text[-1]]
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise AssistantError(f"--expires '{text}': give a duration such as 30d or 12h, or a date such as "
                             "2027-01-31") from None


def create_key(db: Path, user: str, scopes: list[str] | None = None, expires: float | None = None,
               rpm: int = 60, daily_tokens: int = 200_000, label: str | None = None) -> tuple[ApiKey, str]:
    """A new key for an existing account; returns it with its token (the only time the token exists)."""
    if get_user(db, user) is None:
        raise AssistantError(f"no user '{user}' (see `assistant users list`); a key acts as an existing account")
    scopes = scopes or list(SCOPES)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise AssistantError(f"unknown scope {', '.join(unknown)}: use {', '.join(SCOPES)}")
    if rpm < 1 or daily_tokens < 1:
        raise AssistantError("--rpm and --daily-tokens must be at least 1")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with connect(db) as conn:
        conn.execute("INSERT INTO api_keys (id, user, secret_hash, label, scopes, rpm, daily_tokens, created, expires)"
                     " VALUES (?,?,?,?,?,?,?,?,?)",
                     (key_id, user, _hash(secret), label, ",".join(scopes), rpm, daily_tokens, now_iso(), expires))
        row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return _key(row), f"{PREFIX}{key_id}.{secret}"


def list_keys(db: Path, user: str | None = None) -> list[ApiKey]:
    with connect(db) as conn:
        rows = conn.execute("SELECT * FROM api_keys" + (" WHERE user = ?" if user else "") + " ORDER BY created",
                            (user,) if user else ()).fetchall()
    return [_key(r) for r in rows]


def revoke_key(db: Path, key_id: str) -> ApiKey:
    key_id = key_id.removeprefix(PREFIX).split(".")[0]
    with connect(db) as conn:
        if conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                        (time.time(), key_id)).rowcount == 0 and not conn.execute(
                "SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone():
            raise AssistantError(f"no API key '{key_id}' (see `assistant keys list`)")
        row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return _key(row)


def authenticate(db: Path, token: str, scope: str | None) -> tuple[ApiKey, Account]:
    """The key and its account as they are now, or KeyRejected saying why (never whether another key exists)."""
    token = token.strip()
    if not token.startswith(PREFIX) or "." not in token:
        raise KeyRejected("invalid API key: expected 'Authorization: Bearer da-…' with a key from "
                          "`assistant keys create`")
    key_id, secret = token[len(PREFIX):].split(".", 1)
    with connect(db) as conn:
        row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None or not hmac.compare_digest(row["secret_hash"], _hash(secret)):
        raise KeyRejected("invalid API key")
    key = _key(row)
    if key.state != "active":
        raise KeyRejected(f"API key {key.id} is {key.state}")
    account = get_user(db, key.user)
    if account is None:
        raise KeyRejected(f"API key {key.id} belongs to a removed account")
    if scope is not None and scope not in key.scopes:
        raise KeyRejected(f"API key {key.id} may not use '{scope}' (its scopes: {', '.join(key.scopes)})")
    return key, account


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def admit(db: Path, key: ApiKey, now: float | None = None) -> None:
    """Count one request of `key`, or raise LimitExceeded (429) with the seconds until it would pass."""
    now = time.time() if now is None else now
    minute, into = int(now // 60), (now % 60) / 60
    day = _day(now)
    refusal: LimitExceeded | None = None
    with connect(db) as conn:  # one transaction: the check and the count, or the refusal counted
        core_db.begin_write(conn, "api_rate", key.id)  # concurrent requests of a key (any process) queue here
        used = conn.execute("SELECT tokens FROM api_usage WHERE key_id = ? AND day = ?", (key.id, day)).fetchone()
        rows = dict(conn.execute("SELECT minute, requests FROM api_rate WHERE key_id = ? AND minute >= ?",
                                 (key.id, minute - 1)).fetchall())
        rate = rows.get(minute, 0) + rows.get(minute - 1, 0) * (1 - into)
        if used and used["tokens"] >= key.daily_tokens:
            midnight = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0) + timedelta(days=1)
            refusal = LimitExceeded(f"API key {key.id} used its {key.daily_tokens} tokens of today (UTC)",
                                    midnight.timestamp() - now)
        elif rate + 1 > key.rpm:
            # the previous minute's weight falls as time passes; at the latest the next minute starts afresh
            prev = rows.get(minute - 1, 0)
            wait = (rate + 1 - key.rpm) / prev * 60 if prev and rows.get(minute, 0) < key.rpm else 60 * (1 - into)
            refusal = LimitExceeded(f"API key {key.id} is limited to {key.rpm} requests per minute", min(wait, 60.0))
        if refusal is not None:
            conn.execute("INSERT INTO api_usage (key_id, day, refused) VALUES (?, ?, 1) ON CONFLICT(key_id, day) "
                         "DO UPDATE SET refused = api_usage.refused + 1", (key.id, day))
        else:
            conn.execute("INSERT INTO api_rate (key_id, minute, requests) VALUES (?, ?, 1) "
                         "ON CONFLICT(key_id, minute) DO UPDATE SET requests = api_rate.requests + 1", (key.id, minute))
            conn.execute("DELETE FROM api_rate WHERE key_id = ? AND minute < ?", (key.id, minute - 1))
            conn.execute("INSERT INTO api_usage (key_id, day, requests) VALUES (?, ?, 1) "
                         "ON CONFLICT(key_id, day) DO UPDATE SET requests = api_usage.requests + 1", (key.id, day))
            conn.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, key.id))
    if refusal is not None:
        raise refusal


def record_tokens(db: Path, key: ApiKey, tokens: int, cached: bool = False, now: float | None = None) -> None:
    """Add an answered request's model tokens (and whether the cache served it) to the key's day."""
    day = _day(time.time() if now is None else now)
    with connect(db) as conn:
        conn.execute("INSERT INTO api_usage (key_id, day, tokens, cached) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT(key_id, day) DO UPDATE SET tokens = api_usage.tokens + excluded.tokens, "
                     "cached = api_usage.cached + excluded.cached", (key.id, day, int(tokens), int(cached)))


def usage(db: Path, days: int = 7) -> list[dict]:
    """Requests, tokens, refusals (429) and cache hits per key and day, latest first, with the key's user."""
    since = _day(time.time() - 86400 * (days - 1))
    with connect(db) as conn:
        rows = conn.execute("SELECT u.day, u.key_id, k.user, k.label, u.requests, u.tokens, u.refused, u.cached, "
                            "k.daily_tokens FROM api_usage u LEFT JOIN api_keys k ON k.id = u.key_id "
                            "WHERE u.day >= ? ORDER BY u.day DESC, u.tokens DESC", (since,)).fetchall()
    return [dict(r) for r in rows]
