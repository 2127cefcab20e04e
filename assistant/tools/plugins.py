"""Tool plug-ins: which tools the model may call is a setting (`ASSISTANT_TOOLS`), not code in the chain.

A plug-in is a function `(settings) -> list[BaseTool]`, named `package.module:function`; built-in names are
short aliases for the project's own plug-ins.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from langchain_core.tools import BaseTool

from assistant.tools.registry import ToolRegistry
from core.errors import AssistantError
from core.settings import Settings

Plugin = Callable[[Settings], list[BaseTool]]
BUILTIN = {"demo": "assistant.tools.demo:plugin"}


def resolve(name: str) -> Plugin:
    target = BUILTIN.get(name, name)
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise AssistantError(f"tool plug-in '{name}': name a built-in ({', '.join(BUILTIN)}) or "
                             "'package.module:function' in ASSISTANT_TOOLS")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise AssistantError(f"tool plug-in '{name}' cannot be loaded ({exc}); check ASSISTANT_TOOLS") from None


def load_tools(settings: Settings) -> ToolRegistry:
    """The registry of every configured plug-in's tools."""
    registry = ToolRegistry()
    for name in settings.tools:
        registry.add(*resolve(name)(settings))
    return registry
