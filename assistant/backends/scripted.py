"""A chat backend that writes given replies, for attacks that depend on *what* a model writes (a nested tool
call, a call cut short by Stop): whatever the model, an attacker can make it write that text, so the chain,
tools, audit and UI around it are what is tested; they are all real."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from assistant.backends.base import ModelTurn, parsed_message


@dataclass
class ScriptedChat:
    """A `ChatBackend`: reply i to the i-th model turn (the last one repeats); `seen` holds what each got."""

    stops_early = True  # nothing to free when the chain ends a turn mid-stream
    replies: list[str]
    seen: list[list[BaseMessage]] = field(default_factory=list)
    name: str = "scripted"

    def turn(self, messages: list[BaseMessage], tools: list[dict[str, Any]], *, think: bool, adapter: str | None,
             on_text: Callable[[str], None]) -> ModelTurn:
        self.seen.append(list(messages))
        text = self.replies[min(len(self.seen) - 1, len(self.replies) - 1)]
        for i in range(0, len(text), 7):  # streamed in pieces, as a real model does
            on_text(text[i:i + 7])
        return ModelTurn(parsed_message(text))
