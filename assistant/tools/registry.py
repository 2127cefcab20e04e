"""The tool registry: typed LangChain tools with permissions, validated arguments and a timeout.

Adding a company's own tool is one decorated function:

    @business_tool(roles={"claims", "admin"})
    def get_claim_status(claim_id: str) -> dict:
        "查询理赔案件进度 / Look up a claim's status."
        ...

Every outcome (result, validation error, denial, timeout, crash) comes back as a `ToolResult` the chain
can show to the model: nothing a tool does raises into the chain.

Who may call a tool is decided by `core.access` (the one access decision). A tool runs with exactly the
arguments that were validated and recorded: keys its schema does not declare (LangChain's `type`/`args`/`id`
tool-call shape nested inside the arguments, for one) are refused, never passed on. A tool that runs past
its timeout is stopped (an exception raised inside its thread at the next Python instruction); work stuck
inside one C call (a huge integer power, a long SQL statement) cannot be interrupted that way, so such
tools bound their own work (see the calculator).
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from core.access import ToolRule
from core.errors import validation_problems
from core.identity import User


@dataclass(frozen=True)
class ToolContext:
    """What a tool may reach during one turn, built per request for the asking user: `search` is the
    knowledge-base search with exactly the chat's filters (the user's knowledge base and departments)."""

    user: User
    kb: str | None = None
    search: Callable[[str], list[dict]] | None = None


# the user a tool runs for (e.g. draft_email records who drafted) and the turn's context; set by execute()
current_user: contextvars.ContextVar[User | None] = contextvars.ContextVar("current_user", default=None)
current_context: contextvars.ContextVar[ToolContext | None] = contextvars.ContextVar("tool_context", default=None)

Access = ToolRule  # the rule a tool declares; decided by core.access

# keys of LangChain's ToolCall shape: inside arguments they would make `invoke` run the nested call instead
RESERVED_KEYS = frozenset({"type", "args", "id", "name", "arguments", "function", "tool_call_id", "call_id"})
# JSON Schema words a small model copies from the tool's schema into its call ('required': ['expression']): they are
# dropped rather than failing a call whose real arguments are all there (a failed call leaves the model answerless)
SCHEMA_ECHO = frozenset({"required", "properties", "description", "title", "additionalProperties"})


class ToolCancelled(BaseException):
    """Raised inside a tool's thread when it ran past its timeout (BaseException: `except Exception` in a
    tool cannot swallow it)."""


def run_with_timeout(fn: Callable[[], Any], timeout: float, name: str = "tool") -> tuple[bool, Any]:
    """(finished, value-or-exception). An overrunning `fn` is stopped, not left running in the background."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except ToolCancelled:
            box["cancelled"] = True
        except BaseException as exc:  # noqa: BLE001 (reported to the caller)
            box["error"] = exc

    th = threading.Thread(target=target, name=f"tool-{name}", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive() and th.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(th.ident), ctypes.py_object(ToolCancelled))
        th.join(0.2)
        return False, None
    if "error" in box:
        return True, box["error"]
    return True, box.get("value")


@dataclass
class ToolResult:
    name: str
    arguments: dict[str, Any]
    ok: bool
    result: Any = None
    error: str | None = None
    denied: bool = False
    duration_s: float = 0.0
    dropped: bool = False  # attempted by the model but not run (not offered, or failing a rule of the answer path)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "denied" if self.denied else "dropped" if self.dropped else "error"

    def for_model(self) -> str:
        """What goes back to the model as the tool message."""
        import json

        if self.ok:
            return json.dumps(self.result, ensure_ascii=False, default=str)
        return json.dumps({"error": self.error}, ensure_ascii=False)


def business_tool(roles: set[str] | None = None, departments: set[str] | None = None, timeout_s: float = 10.0,
                  route: dict[str, str] | None = None, uses_figures: str | None = None,
                  offer: bool = True) -> Callable[[Callable[..., Any]], BaseTool]:
    """Decorator: a typed function (docstring = description) becomes a tool with an access rule.

    `route` ({argument: regex}): the argument's value is one the user types (a record id, an e-mail address): the
    model may call the tool only with a value the user wrote, and a question in which the regex finds exactly one
    value (for a tool needing nothing else) is answered through this tool before the model writes
    (assistant.chain.calls, assistant.chain.routing).

    `uses_figures` (an argument name): a calculation from figures; the model is offered the tool only when the
    question states a figure, and a call whose figures stand neither in the question nor in the documents is not
    run.

    `offer=False`: the model is never offered the tool in the answer path (a search the retrieval stage already
    does); it stays callable by name (`ToolRegistry.execute`)."""

    def wrap(fn: Callable[..., Any]) -> BaseTool:
        t = tool(fn, parse_docstring=False)
        t.metadata = {"access": ToolRule(frozenset(roles or ()), frozenset(departments or ())), "timeout_s": timeout_s,
                      "route": dict(route or {}), "uses_figures": uses_figures, "offer": offer}
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

    def access(self, name: str) -> ToolRule:
        meta = self.tools[name].metadata or {}
        return meta.get("access", ToolRule())

    def allowed(self, user: User) -> list[BaseTool]:
        return [t for n, t in self.tools.items() if self.access(n).allows(user)]

    def offered(self, user: User) -> list[BaseTool]:
        """The tools the answer path may offer the model for this user."""
        return [t for t in self.allowed(user) if (t.metadata or {}).get("offer", True)]

    def schemas(self, user: User, offered_only: bool = False) -> list[dict[str, Any]]:
        """OpenAI-format schemas of the tools this user may call (or that the answer path may offer them)."""
        return [_ordered(convert_to_openai_tool(t)) for t in (self.offered(user) if offered_only else
                                                               self.allowed(user))]

    def execute(self, name: str, arguments: dict[str, Any], user: User,
                context: ToolContext | None = None) -> ToolResult:
        """Run one call for `user`. The ToolResult's `arguments` are exactly what the tool ran with."""
        t0 = time.perf_counter()

        def done(args: dict[str, Any] = arguments, **kw: Any) -> ToolResult:
            return ToolResult(name, args, duration_s=round(time.perf_counter() - t0, 4), **kw)

        t = self.tools.get(name)
        if t is None:  # name only what this user may call: the error must not reveal restricted tools
            mine = ", ".join(x.name for x in self.allowed(user)) or "none"
            return done(ok=False, error=f"unknown tool '{name}'; available: {mine}")
        if not self.access(name).allows(user):
            return done(ok=False, denied=True,
                        error=f"permission denied: user '{user.name}' (role {user.role}) may not use '{name}'")
        if not isinstance(arguments, dict):
            return done(ok=False, error=f"arguments of '{name}' must be a JSON object")
        schema = t.args_schema
        declared = set(getattr(schema, "model_fields", None) or ())
        arguments = {k: v for k, v in arguments.items() if k in declared or k not in SCHEMA_ECHO}
        extra = sorted(set(arguments) - declared)
        if extra:
            reserved = " (reserved: a tool call cannot be nested in the arguments)" \
                if RESERVED_KEYS & set(extra) else ""
            return done(ok=False, error=f"invalid arguments for '{name}': unexpected {', '.join(map(repr, extra))}"
                                        f"{reserved}; it takes {', '.join(sorted(declared)) or 'no arguments'}")
        try:
            validated = schema.model_validate(arguments)  # type: ignore[union-attr]
        except ValidationError as exc:
            problems = validation_problems(exc, "arguments")
            return done(ok=False, error=f"invalid arguments for '{name}': {problems}")
        run_args = {k: getattr(validated, k) for k in arguments}  # validated values, only the keys given
        timeout = (t.metadata or {}).get("timeout_s", 10.0)
        ctx = contextvars.copy_context()
        ctx.run(current_user.set, user)
        ctx.run(current_context.set, context or ToolContext(user))
        fn = getattr(t, "func", None)
        if fn is not None:  # the function itself: nothing between the validated arguments and the code
            finished, value = run_with_timeout(lambda: ctx.run(fn, **run_args), timeout, name)
        else:
            finished, value = run_with_timeout(lambda: ctx.run(t.invoke, run_args), timeout, name)
        if not finished:
            return done(run_args, ok=False, error=f"'{name}' did not answer within {timeout:g} s (stopped)")
        if isinstance(value, BaseException):  # a tool's own failure is reported to the model, not raised
            return done(run_args, ok=False, error=f"'{name}' failed: {value}")
        return done(run_args, ok=True, result=value)
