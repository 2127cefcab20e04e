"""A chat turn as a training conversation, for the feedback store (`core.feedback`)."""

from __future__ import annotations

import json
from typing import Any

from assistant.backends.base import to_template_messages
from assistant.chain import Assistant, Source


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
