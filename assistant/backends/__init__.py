"""Chat backends behind one interface (`ChatBackend.turn`): the local engine and OpenAI-compatible servers."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from assistant.backends.base import ChatBackend, EngineLost, ModelTurn, TurnStats
from core.settings import Settings

__all__ = ["ChatBackend", "EngineLost", "ModelTurn", "TurnStats", "as_backend", "local_engine", "make_backend"]


def local_engine(settings: Settings) -> str:
    """The local backend's engine: the setting, or with 'auto' llama.cpp on CPU where the model is a GGUF (the
    offline model, a .gguf, a folder holding one) and llama-cpp-python is installed, else transformers."""
    if settings.engine != "auto":
        return settings.engine
    import importlib.util

    import torch

    from core.errors import AssistantError
    from core.models import resolve_gguf

    if torch.cuda.is_available() or importlib.util.find_spec("llama_cpp") is None:
        return "transformers"
    try:
        resolve_gguf(settings.model, settings)
    except AssistantError:
        return "transformers"  # a safetensors folder or hub id: transformers serves it
    return "llamacpp"


def make_backend(settings: Settings, runtime: Any = None) -> ChatBackend:
    """The configured backend: `openai` (a server) or `local` (the model loaded in this process: llama.cpp or
    transformers, per `local_engine`; a given transformers `runtime` is used as is)."""
    if settings.backend == "openai":
        from assistant.backends.openai import OpenAICompatibleBackend, openai_chat

        forced = settings.adapter if settings.adapter != "none" else None
        urls = list(dict.fromkeys(settings.openai_base_urls))
        if len(urls) <= 1:
            one = settings.model_copy(update={"openai_base_url": urls[0]}) if urls else settings
            return OpenAICompatibleBackend(openai_chat(one, forced, settings.thinking), one)
        from assistant.backends.engines import EnginePool

        pool = EnginePool(urls, settings.openai_api_key, settings.engine_health_interval_s)
        chats = {e.url: openai_chat(settings.model_copy(update={"openai_base_url": e.url}), forced, settings.thinking)
                 for e in pool.engines}
        return OpenAICompatibleBackend(chats[pool.engines[0].url], settings, pool=pool, chats=chats)
    if runtime is None and local_engine(settings) == "llamacpp":
        from assistant.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend.load(settings.model, settings)
    from assistant.backends.local import LocalBackend, LocalQwenChat
    from assistant.backends.runtime import ModelRuntime

    runtime = runtime or ModelRuntime.load(settings.model, settings)
    return LocalBackend(LocalQwenChat(runtime=runtime, max_new_tokens=settings.max_new_tokens))


def as_backend(chat: ChatBackend | BaseChatModel, settings: Settings) -> ChatBackend:
    """A backend from a backend or a LangChain chat model (the local one, or any OpenAI-compatible client)."""
    if isinstance(chat, ChatBackend):
        return chat
    from assistant.backends.local import LocalBackend, LocalQwenChat
    from assistant.backends.openai import OpenAICompatibleBackend

    if isinstance(chat, LocalQwenChat):
        return LocalBackend(chat)
    return OpenAICompatibleBackend(chat, settings)
