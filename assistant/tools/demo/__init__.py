"""The demo insurer's business tools and records (policies, claims, orders): a plug-in chosen by settings
(`ASSISTANT_TOOLS=["demo"]`, the default)."""

from __future__ import annotations

from langchain_core.tools import BaseTool

from core.settings import Settings


def plugin(settings: Settings) -> list[BaseTool]:
    """The demo tools over the demo business database (created and seeded on first use)."""
    from assistant.tools.demo.business_db import ensure_business_db
    from assistant.tools.demo.tools import demo_tools

    return demo_tools(ensure_business_db(settings.business_db))
