"""OpenAI-format schemas of the demo business tools, exactly as the chain's registry presents them to the
model; the domain training set embeds these so the adapter learns the names and arguments it will call."""

from __future__ import annotations

from pathlib import Path

from assistant.tools.demo.tools import demo_registry
from core.identity import User

# the tools are not executed here, so the database path is never opened
DEMO_TOOL_SCHEMAS: list[dict] = demo_registry(Path("unused.db")).schemas(User("schema", role="admin"))

# what each kind of user is shown (tools filter by role): the training set uses these views so the adapter
# sees the same tool lists the chain sends
TOOL_VIEWS: dict[str, list[dict]] = {
    role: demo_registry(Path("unused.db")).schemas(User("schema", role=role)) for role in ("staff", "claims", "admin")
}
