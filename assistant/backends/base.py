"""The one interface the chain talks to: send messages + tools, get back one model turn (text, parsed tool
calls, reasoning) and that request's own statistics. What differs between engines lives behind it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from core.errors import AssistantError
from core.toolcalls import parse_output, split_thinking

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


@dataclass
class TurnStats:
    """One request's figures (never shared between requests: two staff may ask at once)."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0  # time to first token
    cached_tokens: int = 0  # prompt tokens whose KV state was already there (a kept prefix), not prefilled
    total_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        decode = self.total_s - self.prefill_s
        return (self.new_tokens - 1) / decode if self.new_tokens > 1 and decode > 0 else 0.0


@dataclass
class ModelTurn:
    """What the model said in one turn: `message.content` (answer text), `message.tool_calls` (parsed),
    `additional_kwargs` with `reasoning_content`, the `raw` text and `tool_call_errors` (malformed calls)."""

    message: AIMessage
    stats: TurnStats = field(default_factory=TurnStats)


class EngineLost(AssistantError):
    """An engine died after part of its reply had streamed. `resume(on_text)` runs the same request afresh on
    another engine (the text streamed so far is void: the caller takes it back before resuming)."""

    def __init__(self, message: str, resume: Callable[[Callable[[str], None]], ModelTurn]) -> None:
        super().__init__(message)
        self.resume = resume


@runtime_checkable
class ChatBackend(Protocol):
    name: str

    def turn(self, messages: list[BaseMessage], tools: list[dict[str, Any]], *, think: bool,
             adapter: str | None, on_text: Callable[[str], None], schema: dict[str, Any] | None = None) -> ModelTurn:
        """Run one model turn, calling `on_text` with each streamed piece of raw text. With `schema` (a JSON
        schema), the reply is constrained to a JSON object that validates against it where the engine can enforce
        that (local engines, servers with guided decoding); `additional_kwargs["raw"]` holds the reply text."""
        ...


def to_template_messages(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages -> the dicts a Qwen chat template renders (tool calls and responses included)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = _ROLES.get(m.type, "user")
        d: dict[str, Any] = {"role": role, "content": m.content if isinstance(m.content, str) else str(m.content)}
        if isinstance(m, AIMessage) and m.tool_calls:
            d["tool_calls"] = [{"type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                               for c in m.tool_calls]
        if isinstance(m, ToolMessage) and m.name:
            d["name"] = m.name
        out.append(d)
    return out


def structured_message(text: str) -> AIMessage:
    """A constrained reply -> an AIMessage whose content and `raw` are the reply (JSON) and whose
    `reasoning_content` is the thinking before it, if any (no tool-call parsing: the reply is the structure)."""
    thinking, reply = split_thinking(text)
    return AIMessage(content=reply, additional_kwargs={"reasoning_content": thinking, "raw": reply,
                                                       "tool_call_errors": []})


def parsed_message(text: str, **extra: Any) -> AIMessage:
    """A model's raw text -> an AIMessage with its tool calls, reasoning and malformed-call errors."""
    parsed = parse_output(text)
    calls = [{"name": c.name, "args": c.arguments, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "tool_call"}
             for c in parsed.calls]
    return AIMessage(content=parsed.content, tool_calls=calls, additional_kwargs={
        "reasoning_content": parsed.thinking, "raw": text, "tool_call_errors": parsed.errors, **extra})
