"""Each user's saved conversations: new, rename, delete, and the messages with the chain's full answer
(sources, tool calls, thinking, audit id) so a reloaded page shows exactly what was shown before."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.app.db import connect
from core.clock import now_iso
from core.errors import AssistantError


@dataclass(frozen=True)
class Conversation:
    id: str
    user: str
    title: str
    created: str
    updated: str


def create(db: Path, user: str, title: str = "New conversation") -> Conversation:
    ts = now_iso()
    conv = Conversation(uuid.uuid4().hex[:12], user, title.strip() or "New conversation", ts, ts)
    with connect(db) as conn:
        conn.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?)",
                     (conv.id, conv.user, conv.title, conv.created, conv.updated))
    return conv


def list_for(db: Path, user: str) -> list[Conversation]:
    with connect(db) as conn:
        rows = conn.execute("SELECT * FROM conversations WHERE user = ? ORDER BY updated DESC, rowid DESC",
                            (user,)).fetchall()
    return [Conversation(**dict(r)) for r in rows]


def _owned(conn: Any, conversation_id: str, user: str) -> None:
    row = conn.execute("SELECT user FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    if row is None or row["user"] != user:  # another user's conversation is as good as missing
        raise AssistantError(f"no conversation '{conversation_id}' for user '{user}'")


def rename(db: Path, conversation_id: str, user: str, title: str) -> None:
    if not title.strip():
        raise AssistantError("a conversation title cannot be empty")
    with connect(db) as conn:
        _owned(conn, conversation_id, user)
        conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title.strip()[:120], conversation_id))


def delete(db: Path, conversation_id: str, user: str) -> None:
    with connect(db) as conn:
        _owned(conn, conversation_id, user)
        conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))  # messages cascade


def add_turn(db: Path, conversation_id: str, user: str, question: str, answer: str,
             payload: dict[str, Any]) -> None:
    """The question and the answer in one transaction; a new conversation is titled by its first question."""
    ts = now_iso()
    with connect(db) as conn:
        _owned(conn, conversation_id, user)
        conn.execute("INSERT INTO messages (conversation_id, role, content, payload, created) VALUES (?, ?, ?, ?, ?)",
                     (conversation_id, "user", question, None, ts))
        conn.execute("INSERT INTO messages (conversation_id, role, content, payload, created) VALUES (?, ?, ?, ?, ?)",
                     (conversation_id, "assistant", answer, json.dumps(payload, ensure_ascii=False, default=str), ts))
        count = conn.execute("SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conversation_id,))
        if count.fetchone()[0] == 2:
            conn.execute("UPDATE conversations SET title = ? WHERE id = ? AND title = 'New conversation'",
                         (question.strip().splitlines()[0][:60] or "New conversation", conversation_id))
        conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (ts, conversation_id))


def messages(db: Path, conversation_id: str, user: str) -> list[dict[str, Any]]:
    with connect(db) as conn:
        _owned(conn, conversation_id, user)
        rows = conn.execute("SELECT role, content, payload, created FROM messages WHERE conversation_id = ? "
                            "ORDER BY id", (conversation_id,)).fetchall()
    return [{"role": r["role"], "content": r["content"], "created": r["created"],
             "payload": json.loads(r["payload"]) if r["payload"] else None} for r in rows]


def history(msgs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The chain's history format from saved messages."""
    return [{"role": m["role"], "content": m["content"]} for m in msgs]
