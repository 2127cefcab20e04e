"""LangChain chat models for the chain: the local runtime (transformers + peft adapters) and any
OpenAI-compatible server (vLLM `--enable-lora`, llama.cpp server, Ollama) through `langchain-openai`.

Both take per-request `tools`, `enable_thinking` and `adapter`; both return an AIMessage whose
`tool_calls` are parsed from Qwen's `<tool_call>` blocks (or fenced JSON) when the server did not.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from assistant.backends.runtime import ModelRuntime
from core.settings import Settings
from core.toolcalls import parse_output

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


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


def parsed_message(text: str, **extra: Any) -> AIMessage:
    parsed = parse_output(text)
    calls = [{"name": c.name, "args": c.arguments, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "tool_call"}
             for c in parsed.calls]
    return AIMessage(content=parsed.content, tool_calls=calls, additional_kwargs={
        "reasoning_content": parsed.thinking, "raw": text, "tool_call_errors": parsed.errors, **extra})


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
        for piece in self.runtime.stream(prompt, key, kwargs.get("max_new_tokens", self.max_new_tokens),
                                         self.temperature):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text = "".join(c.text for c in self._stream(messages, stop, run_manager, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=parsed_message(text))])


def openai_chat(settings: Settings, adapter: str | None, enable_thinking: bool) -> BaseChatModel:
    """An OpenAI-compatible server; the adapter is passed as the model name (vLLM `--lora-modules`)."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key or "not-needed",
        model=adapter or settings.openai_model,
        temperature=0,
        streaming=True,
        max_tokens=settings.max_new_tokens,
        # vLLM and SGLang pass these to the Qwen3 chat template
        extra_body={"chat_template_kwargs": {"enable_thinking": enable_thinking}},
    )


def message_from_openai(msg: AIMessage) -> AIMessage:
    """Servers with a tool parser fill `tool_calls`; others leave Qwen's text: parse it then."""
    if msg.tool_calls:
        return msg
    text = msg.content if isinstance(msg.content, str) else json.dumps(msg.content)
    reasoning = msg.additional_kwargs.get("reasoning_content")
    parsed = parsed_message(text)
    if reasoning and not parsed.additional_kwargs.get("reasoning_content"):
        parsed.additional_kwargs["reasoning_content"] = reasoning
    return parsed
