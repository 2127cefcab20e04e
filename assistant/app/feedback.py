"""A chat turn as a training conversation, for the feedback store (`core.feedback`): exactly the prompt the model
answered and its structured reply (core.prompts), so an adapter trained on feedback learns the form the engine
enforces."""

from __future__ import annotations

from typing import Any

from core.prompts import Passage, PromptUnit, answer_messages, answer_reply


def turn_example(question: str, history: list[dict[str, str]], payload: dict[str, Any],
                 tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The turn as the model saw it, in the `messages` training format (finetune/data.py): the chain's recorded
    `transcript` (its last message is the model's reply). A turn whose reply is not on record (nothing relevant
    was found, or the model failed) is its evidence and question answered by the refusal. The tools are described
    in the prompt's own rules (as served), so the example carries no separate tool list."""
    transcript = [dict(m) for m in payload.get("transcript") or []]
    if transcript and transcript[-1].get("role") == "assistant":
        messages = transcript
    else:
        units = [PromptUnit(u["n"], u["text"], Passage(u["source"], "", u.get("page"), u.get("clause"),
                                                       u.get("page_label")).header())
                 for u in payload.get("units") or [] if u.get("call") is None]
        messages = [*answer_messages(units, question, payload.get("tools") or tools),
                    {"role": "assistant", "content": answer_reply([], [], "")}]
    if payload.get("thinking"):
        messages[-1]["reasoning_content"] = payload["thinking"]
    return {"messages": messages}
