"""OpenAI-format schemas of the demo business tools, exactly as the chain's registry presents them to the
model; the domain training set embeds these so the adapter learns the names and arguments it will call."""

from __future__ import annotations

from pathlib import Path

from assistant.demo_tools import demo_registry
from assistant.tools import User

# the tools are not executed here, so the database path is never opened
DEMO_TOOL_SCHEMAS: list[dict] = demo_registry(Path("unused.db")).schemas(User("schema", role="admin"))
