"""Any OpenAI-compatible server (vLLM `--enable-lora`, llama.cpp's server, Ollama) through `langchain-openai`:
the adapter is sent as the model name, thinking through `chat_template_kwargs`; tool calls are taken from the
server's parser when it has one, else parsed from Qwen's text."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage

from assistant.backends.base import EngineLost, ModelTurn, TurnStats, parsed_message, structured_message
from assistant.backends.engines import EnginePool
from core.errors import AssistantError
from core.settings import Settings


@functools.cache
def _chat_openai() -> type[BaseChatModel]:
    from langchain_openai import ChatOpenAI

    class ServerChatOpenAI(ChatOpenAI):
        """ChatOpenAI whose requests llama.cpp's Python server (llama-cpp-python) reads as meant too: the answer
        budget goes as `max_tokens` besides `max_completion_tokens` (langchain-openai sends only the latter, which
        that server ignores: it generated until its context was full), and an assistant turn that only calls tools
        has content "" instead of null (that server answers null with a 500; "" renders the same Qwen prompt)."""

        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            if "max_completion_tokens" in payload:
                payload.setdefault("max_tokens", payload["max_completion_tokens"])
            for m in payload.get("messages") or []:
                if m.get("role") == "assistant" and m.get("content") is None:
                    m["content"] = ""
            return payload

    return ServerChatOpenAI


def openai_chat(settings: Settings, adapter: str | None, enable_thinking: bool) -> BaseChatModel:
    """An OpenAI-compatible server; the adapter is passed as the model name (vLLM `--lora-modules`)."""
    return _chat_openai()(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key or "not-needed",
        model=adapter or settings.openai_model,
        temperature=0,
        streaming=True,
        max_tokens=settings.max_new_tokens,
        stream_usage=True,
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


class _Lost(AssistantError):
    """An engine failed after text was shown (inside `_routed`; the caller gets `EngineLost`)."""


class OpenAICompatibleBackend:
    """One server (`chat`), or several (`pool` + one chat model per URL in `chats`): a request then goes to a healthy
    engine, and one that fails before any text came back is marked down and the request goes to the next."""

    def __init__(self, chat: BaseChatModel, settings: Settings, name: str | None = None,
                 pool: EnginePool | None = None, chats: dict[str, BaseChatModel] | None = None) -> None:
        self.chat = chat
        self.settings = settings
        self.pool, self.chats = pool, chats or {}
        urls = ",".join(e.url for e in pool.engines) if pool is not None else settings.openai_base_url
        self.name = name or f"openai:{urls}"

    def turn(self, messages: list[BaseMessage], tools: list[dict[str, Any]], *, think: bool,
             adapter: str | None, on_text: Callable[[str], None], schema: dict[str, Any] | None = None) -> ModelTurn:
        return self._turn(messages, tools, think, adapter, on_text, schema, set())

    def _turn(self, messages: list[BaseMessage], tools: list[dict[str, Any]], think: bool, adapter: str | None,
              on_text: Callable[[str], None], schema: dict[str, Any] | None, tried: set[str]) -> ModelTurn:
        stats = TurnStats()
        t0 = time.perf_counter()
        extra: dict[str, Any] = {"chat_template_kwargs": {"enable_thinking": think}}
        fmt = self.settings.openai_response_format
        if schema is not None and fmt == "json_schema":  # guided decoding: OpenAI's form (vLLM, llama-server)
            extra["response_format"] = {"type": "json_schema",
                                        "json_schema": {"name": "reply", "schema": schema, "strict": True}}
        elif schema is not None and fmt == "json_object":  # the older form (llama-cpp-python's server)
            extra["response_format"] = {"type": "json_object", "schema": schema}
        request = {"model": adapter or self.settings.openai_model,  # vLLM serves each LoRA as a model name
                   "extra_body": extra}
        if tools:  # not `tools=None`: langchain-openai fails on it (a user without tools, ASSISTANT_TOOLS=[])
            request["tools"] = tools
        if self.pool is None:
            acc = self._stream(self.chat, self.settings.openai_base_url, messages, request, on_text, stats, t0)
        else:
            try:
                acc = self._routed(messages, request, on_text, stats, t0, tried)
            except _Lost as lost:  # the caller may take back what streamed and resume on the next engine
                raise EngineLost(str(lost), lambda again: self._turn(messages, tools, think, adapter, again, schema,
                                                                     tried)) from lost.__cause__
        stats.total_s = time.perf_counter() - t0
        usage = getattr(acc, "usage_metadata", None) or {}
        stats.prompt_tokens, stats.new_tokens = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        msg = AIMessage(content=acc.content if acc else "", tool_calls=acc.tool_calls if acc else [],
                        additional_kwargs=acc.additional_kwargs if acc else {})
        if schema is not None:  # the reply is the structure; a server's reasoning parser keeps thinking apart
            text = msg.content if isinstance(msg.content, str) else json.dumps(msg.content)
            out = structured_message(text)
            if msg.additional_kwargs.get("reasoning_content") and not out.additional_kwargs["reasoning_content"]:
                out.additional_kwargs["reasoning_content"] = msg.additional_kwargs["reasoning_content"]
            return ModelTurn(out, stats)
        return ModelTurn(message_from_openai(msg), stats)

    def _routed(self, messages: list[BaseMessage], request: dict[str, Any], on_text: Callable[[str], None],
                stats: TurnStats, t0: float, tried: set[str]) -> AIMessageChunk:
        """The request on a healthy engine not in `tried`; an engine that fails is marked down. Before any text was
        shown, the next engine takes the request; after, the caller decides (`EngineLost`): the words it was shown
        are only void if it can take them back."""
        assert self.pool is not None
        model = request["model"]
        while True:
            with self.pool.use(model, exclude=tried) as engine:
                if model and model not in engine.models and engine.models:
                    self._offer_adapter(engine, model)
                shown = [False]

                def show(text: str, shown: list[bool] = shown) -> None:
                    shown[0] = True
                    on_text(text)

                try:
                    return self._stream(self.chats[engine.url], engine.url, messages, request, show, stats, t0)
                except AssistantError as exc:
                    self.pool.mark_down(engine, str(exc.__cause__ or exc))
                    tried.add(engine.url)
                    if shown[0]:
                        raise _Lost(str(exc)) from exc.__cause__

    def _offer_adapter(self, engine: Any, ref: str) -> None:
        """An adapter no engine lists yet: engines that load adapters at run time get it from the shared folder."""
        from core import registry

        try:
            av = registry.get(self.settings, ref)
        except AssistantError:
            return
        self.pool.load_adapter(engine, ref, str(av.path))  # type: ignore[union-attr]

    def _stream(self, chat: BaseChatModel, url: str, messages: list[BaseMessage], request: dict[str, Any],
                on_text: Callable[[str], None], stats: TurnStats, t0: float) -> AIMessageChunk:
        import httpx
        import openai

        acc: AIMessageChunk | None = None
        try:
            for chunk in chat.stream(messages, **request):
                acc = chunk if acc is None else acc + chunk
                if isinstance(chunk.content, str) and chunk.content:
                    if not stats.prefill_s:
                        stats.prefill_s = time.perf_counter() - t0
                    on_text(chunk.content)
        except (openai.APIError, httpx.HTTPError) as exc:  # refused, timed out, or died mid-answer
            raise AssistantError(f"the model server at {url} stopped answering "
                                 f"({type(exc).__name__}: {exc}); check that it is running") from exc
        # a complete reply ends with a finish reason; a body that just stops is a server that died mid-answer
        if acc is None or not (acc.response_metadata or {}).get("finish_reason"):
            raise AssistantError(f"the model server at {url} stopped answering "
                                 "(the reply ended without a finish reason); check that it is running")
        return acc
