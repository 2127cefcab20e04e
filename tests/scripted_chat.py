"""A chat model that writes given replies, for attacks that depend on *what* a model writes (a nested tool
call, a call cut short by Stop): whatever the model, an attacker can make it write that text, so the chain,
tools, audit and UI around it are what is tested; they are all real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from assistant.llm import parsed_message


class ScriptedChat(BaseChatModel):
    replies: list[str]
    seen: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self.seen.append(list(messages))
        text = self.replies[min(len(self.seen) - 1, len(self.replies) - 1)]
        for i in range(0, len(text), 7):  # streamed in pieces, as a real model does
            yield ChatGenerationChunk(message=AIMessageChunk(content=text[i:i + 7]))

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        text = "".join(c.text for c in self._stream(messages, stop, run_manager, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=parsed_message(text))])
