"""Stage 1, standalone question: the question as it must be searched and answered.

A question asked first is used as it is. After earlier turns, the model decides under a schema
(core.prompts.standalone_schema) whether the question stands alone ({"complete": true}: used word for word, so it
gets the answer it gets when asked first, whatever came before) or leaves out what an earlier question said; then
it writes the question out in full. Only the user's own earlier questions are shown to it.

A rewrite only adds what an earlier question said: it must keep every figure, record id and e-mail address of the
question and at least half of its words, or the question is used as the user wrote it (the rejected rewrite is
recorded). A small model otherwise answers an earlier question instead of the one asked (and the answer cache, keyed
by the standalone question, would serve that earlier answer again).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from assistant.backends import ChatBackend
from assistant.chain.generation import structured
from assistant.chain.state import Answer
from core.figures import figures, keys_of
from core.prompts import parse_reply, standalone_messages, standalone_schema
from ingest.lexical import query_terms

HISTORY_TURNS = 3  # the user's earlier questions the decision reads (the latest ones)
_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def dropped(question: str, rewritten: str) -> str | None:
    """What of `question` its rewrite leaves out (figures, ids, addresses, or most of its words); None if it keeps
    it. Words a follow-up leans on ("that one", "其中") may go; the words of what it asks stay."""
    kept = keys_of([rewritten])
    lost = [f.raw for f in figures(question) if not f.values & kept]
    lost += [a for a in _ADDRESS.findall(question) if a.lower() not in rewritten.lower()]
    if lost:
        return ", ".join(dict.fromkeys(lost))
    words = set(query_terms(question))
    missing = words - set(query_terms(rewritten)) - {w for w in words if w in rewritten.lower()}
    if words and 2 * len(missing) > len(words):  # a rewrite that keeps less than half of them is another question
        return "the words " + ", ".join(sorted(missing))
    return None


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
        lost = dropped(ans.question, rewritten.strip())
        if lost:
            ans.malformed.append(f"standalone question: the rewrite {rewritten.strip()!r} leaves out {lost}")
            return
        ans.standalone = rewritten.strip()
