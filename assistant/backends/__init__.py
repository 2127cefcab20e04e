"""Chat backends behind one interface (`ChatBackend.turn`): the local engine and OpenAI-compatible servers."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from assistant.backends.base import ChatBackend, ModelTurn, TurnStats
from core.settings import Settings

__all__ = ["ChatBackend", "ModelTurn", "TurnStats", "as_backend", "make_backend"]


def make_backend(settings: Settings, runtime: Any = None) -> ChatBackend:
    """The configured backend: `openai` (a server) or `local` (the model loaded in this process)."""
    if settings.backend == "openai":
        from assistant.backends.openai import OpenAICompatibleBackend, openai_chat

        return OpenAICompatibleBackend(openai_chat(settings, settings.adapter, settings.thinking), settings)
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
