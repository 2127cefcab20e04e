"""Stage 1, standalone question: the question as it must be searched and answered.

A question asked first is used as it is. After earlier turns, the model decides under a schema
(core.prompts.standalone_schema) whether the question stands alone ({"complete": true}: used word for word, so it
gets the answer it gets when asked first, whatever came before) or leaves out what an earlier question said; then
it writes the question out in full. Only the user's own earlier questions are shown to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from assistant.backends import ChatBackend
from assistant.chain.generation import structured
from assistant.chain.state import Answer
from core.prompts import parse_reply, standalone_messages, standalone_schema

HISTORY_TURNS = 3  # the user's earlier questions the decision reads (the latest ones)


def resolve(ans: Answer, history: Sequence[dict[str, str]], backend: ChatBackend | None) -> None:
    """Set `ans.standalone`: the question itself, or the follow-up written out in full."""
    ans.standalone = ans.question
    asked = [h for h in history if h.get("role") == "user" and h.get("content", "").strip()][-HISTORY_TURNS:]
    if not asked or backend is None:
        return
    turn = structured(backend, standalone_messages(asked, ans.question), standalone_schema(), think=False,
                      adapter=ans.adapter)
    reply = parse_reply(str(turn.message.additional_kwargs.get("raw", turn.message.content)))
    if reply.error is not None:
        ans.malformed.append(f"standalone question: {reply.error}")
        return
    rewritten = reply.data.get("question")
    if reply.data.get("complete") is False and isinstance(rewritten, str) and rewritten.strip():
        ans.standalone = rewritten.strip()
