"""A chat backend that writes given replies, for attacks that depend on *what* a model writes (a nested tool
call, a call cut short by Stop): whatever the model, an attacker can make it write that text, so the chain,
tools, audit and UI around it are what is tested; they are all real."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from assistant.backends.base import ModelTurn, parsed_message, structured_message


@dataclass
class ScriptedChat:
    """A `ChatBackend`: reply i to the i-th model turn (the last one repeats); `seen` holds what each got. A reply
    may be a function of the messages (a reply that cites the unit holding some text, whatever its number)."""

    stops_early = True  # nothing to free when the chain ends a turn mid-stream
    replies: list[str | Callable[[list[BaseMessage]], str]]
    seen: list[list[BaseMessage]] = field(default_factory=list)
    schemas: list[dict[str, Any] | None] = field(default_factory=list)  # the schema each turn was constrained to
    name: str = "scripted"

    def turn(self, messages: list[BaseMessage], tools: list[dict[str, Any]], *, think: bool, adapter: str | None,
             on_text: Callable[[str], None], schema: dict[str, Any] | None = None) -> ModelTurn:
        self.seen.append(list(messages))
        self.schemas.append(schema)
        reply = self.replies[min(len(self.seen) - 1, len(self.replies) - 1)]
        text = reply(messages) if callable(reply) else reply
        for i in range(0, len(text), 7):  # streamed in pieces, as a real model does
            on_text(text[i:i + 7])
        return ModelTurn(structured_message(text) if schema is not None else parsed_message(text))
