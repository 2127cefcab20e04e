"""The feedback store: staff feedback on answers (thumbs up/down, a comment, a corrected answer) tied to the
turn's audit id, each with the turn as a training conversation (the chain's exact transcript) so retraining
needs nothing else. Written by the app, read by retraining: both stand on this one module.

A corrected answer is staff-written text that would become what the model learns to say: it is trained on only
after an admin approved it (`review_correction`); changing an approved correction makes it pending again. One
that writes chat-template control tokens cannot be approved (the training-data gate, `core.control_tokens`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core import db
from core.clock import now_iso
from core.control_tokens import control_token_in
from core.db import Columns
from core.errors import AssistantError

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    audit_id INTEGER NOT NULL,
    user TEXT NOT NULL,
    rating INTEGER NOT NULL,         -- 1 thumbs up, -1 thumbs down
    comment TEXT,
    correction TEXT,                 -- the answer it should have been
    example TEXT NOT NULL,           -- JSON: the turn as a training conversation (messages + tools)
    adapter TEXT,
    created TEXT NOT NULL,
    review TEXT,                     -- corrections only: NULL pending, 'approved' or 'rejected' by an admin
    reviewer TEXT,
    UNIQUE (audit_id, user)
);
-- API turns as training conversations, kept so that a client can rate them later from any app server
CREATE TABLE IF NOT EXISTS turn_examples (
    audit_id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    example TEXT NOT NULL,           -- JSON, as feedback.example
    adapter TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS turn_examples_created ON turn_examples(created);
"""
_ADDED_COLUMNS: Columns = {"feedback": [("review", "TEXT"), ("reviewer", "TEXT")]}
# the stored correction equals the new one, NULLs equal (SQLite's IS, written in SQL both databases read)
_SAME_CORRECTION = ("(feedback.correction = excluded.correction OR (feedback.correction IS NULL AND "
                    "excluded.correction IS NULL))")


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    with db.connect(path, SCHEMA, _ADDED_COLUMNS) as conn:
        yield conn


def add_feedback(path: Path, audit_id: int, user: str, rating: int, example: dict[str, Any],
                 comment: str | None = None, correction: str | None = None, adapter: str | None = None) -> int:
    """Store (or replace: the latest word of a user on a turn counts) feedback on one answer."""
    if rating not in (1, -1):
        raise AssistantError(f"rating must be 1 (helpful) or -1 (wrong), not {rating!r}")
    comment = (comment or "").strip() or None
    correction = (correction or "").strip() or None
    with connect(path) as conn:
        cur = conn.execute(
            "INSERT INTO feedback (audit_id, user, rating, comment, correction, example, adapter, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (audit_id, user) DO UPDATE SET rating = excluded.rating, "
            "comment = excluded.comment, correction = excluded.correction, example = excluded.example, "
            "adapter = excluded.adapter, created = excluded.created, "
            # a reviewed correction stays reviewed only while its text is the one reviewed
            "review = CASE WHEN " + _SAME_CORRECTION + " THEN feedback.review END, "
            "reviewer = CASE WHEN " + _SAME_CORRECTION + " THEN feedback.reviewer END "
            "RETURNING id",
            (audit_id, user, rating, comment, correction, json.dumps(example, ensure_ascii=False, default=str),
             adapter, now_iso()))
        return int(cur.fetchone()[0])


def keep_turn(path: Path, audit_id: int, user: str, example: dict[str, Any], adapter: str | None,
              keep_days: int) -> None:
    """Keep an answered turn's training conversation so its user can rate it later (`feedback_on_kept_turn`);
    turns older than `keep_days` are dropped on the way (feedback already given keeps its own copy)."""
    cutoff = (datetime.now(UTC) - timedelta(days=keep_days)).isoformat(timespec="seconds")
    with connect(path) as conn:
        conn.execute("INSERT INTO turn_examples (audit_id, user, example, adapter, created) VALUES (?, ?, ?, ?, ?) "
                     "ON CONFLICT (audit_id) DO NOTHING",
                     (audit_id, user, json.dumps(example, ensure_ascii=False, default=str), adapter, now_iso()))
        conn.execute("DELETE FROM turn_examples WHERE created < ?", (cutoff,))


def feedback_on_kept_turn(path: Path, audit_id: int, user: str, rating: int, comment: str | None = None,
                          correction: str | None = None) -> int:
    """Feedback on a kept turn (`keep_turn`) by the user it answered; another user's turn, or one not kept (not an
    answer, or older than the keep period), is refused as unknown: turn ids say nothing about other users."""
    with connect(path) as conn:
        row = conn.execute("SELECT example, adapter FROM turn_examples WHERE audit_id = ? AND user = ?",
                           (audit_id, user)).fetchone()
    if row is None:
        raise AssistantError(f"no answered turn {audit_id} of user '{user}' can be rated: give the audit_id of one of "
                             "this user's answers (turns are kept for feedback for a limited time)")
    return add_feedback(path, audit_id, user, rating, json.loads(row["example"]), comment, correction, row["adapter"])


def list_feedback(path: Path, user: str | None = None) -> list[dict[str, Any]]:
    query = "SELECT * FROM feedback" + (" WHERE user = ?" if user else "") + " ORDER BY id"
    with connect(path) as conn:
        rows = conn.execute(query, (user,) if user else ()).fetchall()
    return [dict(r) | {"example": json.loads(r["example"])} for r in rows]


def feedback_for(path: Path, audit_id: int, user: str) -> dict[str, Any] | None:
    with connect(path) as conn:
        row = conn.execute("SELECT rating, comment, correction FROM feedback WHERE audit_id = ? AND user = ?",
                           (audit_id, user)).fetchone()
    return dict(row) if row else None


def pending_corrections(path: Path) -> list[dict[str, Any]]:
    """Corrections waiting for an admin's review, oldest first."""
    return [r for r in list_feedback(path) if r["correction"] and r["review"] is None]


def correction_problem(correction: str) -> str | None:
    """Why a corrected answer cannot become training data, or None. Stricter than the gate of training files: a
    correction is the answer's prose, so no control-token string at all (not even a <tool_call> block)."""
    if token := control_token_in(correction):
        return f"it holds the chat-template control token {token!r}: as training data it would forge a turn or a call"
    return None


def review_correction(path: Path, feedback_id: int, approve: bool, reviewer: str) -> None:
    """Approve (train on it) or reject (never train on it) a corrected answer."""
    with connect(path) as conn:
        row = conn.execute("SELECT correction FROM feedback WHERE id = ?", (feedback_id,)).fetchone()
        if row is None or not row["correction"]:
            raise AssistantError(f"no corrected answer with feedback id {feedback_id}")
        if approve and (problem := correction_problem(row["correction"])):
            raise AssistantError(f"correction #{feedback_id} cannot be approved: {problem}; reject it (or ask its "
                                 "author to remove the markup)")
        conn.execute("UPDATE feedback SET review = ?, reviewer = ? WHERE id = ?",
                     ("approved" if approve else "rejected", reviewer, feedback_id))
