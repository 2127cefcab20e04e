"""The tool registry: typed LangChain tools with permissions, validated arguments and a timeout.

Adding a company's own tool is one decorated function:

    @business_tool(roles={"claims", "admin"})
    def get_claim_status(claim_id: str) -> dict:
        "查询理赔案件进度 / Look up a claim's status."
        ...

Every outcome (result, validation error, denial, timeout, crash) comes back as a `ToolResult` the chain
can show to the model: nothing a tool does raises into the chain.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from core.identity import User

# the user a tool runs for (e.g. draft_email records who drafted); set by ToolRegistry.execute
current_user: contextvars.ContextVar[User | None] = contextvars.ContextVar("current_user", default=None)


@dataclass(frozen=True)
class Access:
    """Who may use a tool or a knowledge base: empty sets mean everyone; admins always may."""

    roles: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()

    def allows(self, user: User) -> bool:
        if user.is_admin:
            return True
        if self.roles and user.role not in self.roles:
            return False
        return not self.departments or user.department in self.departments


@dataclass
class ToolResult:
    name: str
    arguments: dict[str, Any]
    ok: bool
    result: Any = None
    error: str | None = None
    denied: bool = False
    duration_s: float = 0.0

    def for_model(self) -> str:
        """What goes back to the model as the tool message."""
        import json

        if self.ok:
            return json.dumps(self.result, ensure_ascii=False, default=str)
        return json.dumps({"error": self.error}, ensure_ascii=False)


def business_tool(roles: set[str] | None = None, departments: set[str] | None = None,
                  timeout_s: float = 10.0) -> Callable[[Callable[..., Any]], BaseTool]:
    """Decorator: a typed function (docstring = description) becomes a tool with an access rule."""

    def wrap(fn: Callable[..., Any]) -> BaseTool:
        t = tool(fn, parse_docstring=False)
        t.metadata = {"access": Access(frozenset(roles or ()), frozenset(departments or ())), "timeout_s": timeout_s}
        return t

    return wrap


def _ordered(schema: dict[str, Any]) -> dict[str, Any]:
    """Key order as in the domain training set, so the prompt renders exactly as the adapter learnt it."""
    fn = schema["function"]
    params = fn.get("parameters", {})
    props = {k: {"type": v.get("type", "string"), **{x: y for x, y in v.items() if x != "type"}}
             for k, v in params.get("properties", {}).items()}
    return {"type": "function", "function": {
        "name": fn["name"], "description": fn.get("description", ""),
        "parameters": {"type": "object", "properties": props, "required": params.get("required", [])}}}


@dataclass
class ToolRegistry:
    tools: dict[str, BaseTool] = field(default_factory=dict)

    def add(self, *tools: BaseTool) -> ToolRegistry:
        for t in tools:
            self.tools[t.name] = t
        return self

    def access(self, name: str) -> Access:
        meta = self.tools[name].metadata or {}
        return meta.get("access", Access())

    def allowed(self, user: User) -> list[BaseTool]:
        return [t for n, t in self.tools.items() if self.access(n).allows(user)]

    def schemas(self, user: User) -> list[dict[str, Any]]:
        """OpenAI-format schemas of the tools this user may call (what the chat template renders)."""
        return [_ordered(convert_to_openai_tool(t)) for t in self.allowed(user)]

    def execute(self, name: str, arguments: dict[str, Any], user: User) -> ToolResult:
        t0 = time.perf_counter()

        def done(**kw: Any) -> ToolResult:
            return ToolResult(name, arguments, duration_s=round(time.perf_counter() - t0, 4), **kw)

        t = self.tools.get(name)
        if t is None:
            return done(ok=False, error=f"unknown tool '{name}'; available: {', '.join(self.tools)}")
        if not self.access(name).allows(user):
            return done(ok=False, denied=True,
                        error=f"permission denied: user '{user.name}' (role {user.role}) may not use '{name}'")
        try:
            t.args_schema.model_validate(arguments)  # type: ignore[union-attr]
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            return done(ok=False, error=f"invalid arguments for '{name}': {problems}")
        timeout = (t.metadata or {}).get("timeout_s", 10.0)
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            ctx = contextvars.copy_context()
            ctx.run(current_user.set, user)
            value = pool.submit(ctx.run, t.invoke, arguments).result(timeout=timeout)
        except FutureTimeout:
            return done(ok=False, error=f"'{name}' did not answer within {timeout:g} s")
        except Exception as exc:  # a tool's own failure is reported to the model, not raised
            return done(ok=False, error=f"'{name}' failed: {exc}")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return done(ok=True, result=value)
