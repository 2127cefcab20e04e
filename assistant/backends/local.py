"""The local engine as a LangChain chat model (transformers + peft adapters) and the backend the chain uses.

`adapter` selects a loaded LoRA adapter per call (None = the base model); each call fills its own stats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from assistant.backends.base import ModelTurn, TurnStats, parsed_message, structured_message, to_template_messages
from assistant.backends.runtime import ModelRuntime


class LocalQwenChat(BaseChatModel):
    """The local model; `adapter` selects a loaded LoRA adapter per call (None = the base model)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    runtime: ModelRuntime
    max_new_tokens: int = 512
    temperature: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "local-qwen"

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        adapter = kwargs.get("adapter")
        key = self.runtime.ensure_adapter(adapter) if adapter else None
        prompt = self.runtime.render(to_template_messages(messages), kwargs.get("tools"),
                                     bool(kwargs.get("enable_thinking", False)))
        schema = kwargs.get("schema")
        constraint = self.runtime.constraint(schema, bool(kwargs.get("enable_thinking", False))) if schema else None
        for piece in self.runtime.stream(prompt, key, kwargs.get("max_new_tokens", self.max_new_tokens),
                                         self.temperature, stats=kwargs.get("stats"), constraint=constraint):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text = "".join(c.text for c in self._stream(messages, stop, run_manager, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=parsed_message(text))])


class LocalBackend:
    """The chain's backend over the local engine."""

    def __init__(self, chat: LocalQwenChat) -> None:
        self.chat = chat
        self.runtime = chat.runtime
        self.name = chat.runtime.name

    def turn(self, messages: list[BaseMessage], tools: list[dict[str, Any]], *, think: bool,
             adapter: str | None, on_text: Callable[[str], None], schema: dict[str, Any] | None = None) -> ModelTurn:
        stats = TurnStats()
        t0 = time.perf_counter()
        text = ""
        for chunk in self.chat.stream(messages, tools=tools or None, enable_thinking=think, adapter=adapter,
                                      max_new_tokens=self.chat.max_new_tokens, stats=stats, schema=schema):
            text += chunk.content
            on_text(chunk.content)
        stats.total_s = stats.total_s or time.perf_counter() - t0
        return ModelTurn(structured_message(text) if schema is not None else parsed_message(text), stats)
