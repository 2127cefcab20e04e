"""Staff feedback on answers: thumbs up/down, a comment, a corrected answer, tied to the turn's audit id.

Each record keeps the turn as a training conversation (the chain's exact prompt: system with the numbered
passages, history, question, tool calls and results, answer) so retraining needs nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assistant.app.db import connect, now_iso
from assistant.backends.base import to_template_messages
from assistant.chain import Assistant, Source
from core.errors import AssistantError


def turn_example(question: str, history: list[dict[str, str]], payload: dict[str, Any],
                 tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The turn as the model saw it, in the `messages` training format (finetune/data.py).

    The chain records the exact message list it sent (`transcript`: text beside tool calls and the errors for
    malformed calls included) and the tools it showed; only a turn stored before it did so is rebuilt here
    from its parts."""
    if payload.get("transcript"):
        messages = [dict(m) for m in payload["transcript"]]
        tools = payload.get("tools") or tools
    else:
        passages = [Source(p["n"], p["source"], p.get("page"), p.get("clause"), p["text"], p.get("score", 0.0),
                           p.get("chunk_id", "")) for p in payload.get("retrieved", [])]
        messages = to_template_messages(Assistant.messages(question, history, passages))
        for call in payload.get("tool_calls", []):
            messages.append({"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]})
            result = call["result"] if call.get("result") is not None else {"error": call.get("error")}
            messages.append({"role": "tool", "name": call["name"],
                             "content": json.dumps(result, ensure_ascii=False, default=str)})
    final: dict[str, Any] = {"role": "assistant", "content": payload.get("answer", "")}
    if payload.get("thinking"):
        final["reasoning_content"] = payload["thinking"]
    messages.append(final)
    return {"messages": messages, "tools": tools}


def add_feedback(db: Path, audit_id: int, user: str, rating: int, example: dict[str, Any],
                 comment: str | None = None, correction: str | None = None, adapter: str | None = None) -> int:
    """Store (or replace: the latest word of a user on a turn counts) feedback on one answer."""
    if rating not in (1, -1):
        raise AssistantError(f"rating must be 1 (helpful) or -1 (wrong), not {rating!r}")
    comment = (comment or "").strip() or None
    correction = (correction or "").strip() or None
    with connect(db) as conn:
        cur = conn.execute(
            "INSERT INTO feedback (audit_id, user, rating, comment, correction, example, adapter, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (audit_id, user) DO UPDATE SET rating = excluded.rating, "
            "comment = excluded.comment, correction = excluded.correction, example = excluded.example, "
            "adapter = excluded.adapter, created = excluded.created RETURNING id",
            (audit_id, user, rating, comment, correction, json.dumps(example, ensure_ascii=False, default=str),
             adapter, now_iso()))
        return int(cur.fetchone()[0])


def list_feedback(db: Path, user: str | None = None) -> list[dict[str, Any]]:
    query = "SELECT * FROM feedback" + (" WHERE user = ?" if user else "") + " ORDER BY id"
    with connect(db) as conn:
        rows = conn.execute(query, (user,) if user else ()).fetchall()
    return [dict(r) | {"example": json.loads(r["example"])} for r in rows]


def feedback_for(db: Path, audit_id: int, user: str) -> dict[str, Any] | None:
    with connect(db) as conn:
        row = conn.execute("SELECT rating, comment, correction FROM feedback WHERE audit_id = ? AND user = ?",
                           (audit_id, user)).fetchone()
    return dict(row) if row else None
