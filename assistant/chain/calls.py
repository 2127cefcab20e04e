"""Stage 4, tools: the look-ups and calculations a question asks for, run before the answer is written; their
results become evidence units the answer can cite.

- A value the user typed in a tool's declared format (a record id, an explicit sum: `business_tool(route=...)`)
  makes the call certain: it runs without asking the model (assistant.chain.routing).
- Otherwise the model may choose one call, under a schema (core.prompts.tool_schema) that offers only the tools
  whose inputs this turn can supply: an argument declared as user-supplied (`route`) may take only values the
  user wrote (so neither a passage nor the model can make the assistant look up, or mail, what the user never
  named), and a calculation (`uses_figures`) is offered only when the question gives a figure the evidence does
  not state (a value of the asker's own case). A calculation that uses no figure of the question, or one that
  stands neither in the question nor in the evidence, is not run.
- Every call the model attempts is recorded in `ans.tool_calls`, run or not, with why (the audit has each).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool

from assistant.backends import ChatBackend
from assistant.chain import routing
from assistant.chain.generation import structured
from assistant.chain.state import Answer, Emit, Unit
from assistant.tools.registry import ToolContext, ToolRegistry, ToolResult
from core.figures import figures, keys_of
from core.identity import User
from core.prompts import answer_messages, parse_reply, tool_schema


def _required(t: BaseTool) -> tuple[dict[str, Any], list[str]]:
    schema = t.args_schema.model_json_schema() if t.args_schema else {}
    return schema.get("properties", {}), list(schema.get("required", []))


def user_values(t: BaseTool, said: str) -> dict[str, list[str]]:
    """For each argument the tool declares as user-supplied (its `route` pattern), the values in the user's words."""
    routes: dict[str, str] = (t.metadata or {}).get("route") or {}
    figures_arg = (t.metadata or {}).get("uses_figures")
    out = {}
    for arg, pattern in routes.items():
        if arg == figures_arg:
            continue
        found = [routing.normal_value(m.group(0)) for m in re.finditer(pattern, said, re.I)]
        out[arg] = list(dict.fromkeys(v.upper() if "-" in v else v for v in found))
    return out


def own_figures(question: str, evidence: Sequence[str]) -> list[str]:
    """The figures of the question that the evidence does not state: values of the asker's own case (a bill of 1,850,
    a group of 40) that a rule of the documents may have to be applied to."""
    known = keys_of(list(evidence))
    return [f.raw for f in figures(question) if not f.values & known and not any(k.startswith("id:") for k in f.values)]


def offered(tools: Sequence[BaseTool], said: str, question: str, done: set[str],
            evidence: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The tools the model may choose from this turn, each {name, parameters} with its user-supplied arguments
    restricted to the values the user wrote; a calculation only where the question gives a figure of its own."""
    out = []
    for t in tools:
        if t.name in done:
            continue
        props, required = _required(t)
        values = user_values(t, said)
        if any(not v for v in values.values()):
            continue  # a record nobody named cannot be looked up
        figures_arg = (t.metadata or {}).get("uses_figures")
        if figures_arg and not own_figures(question, evidence):
            continue  # nothing of the asker's own to compute with
        params = {}
        for name, spec in props.items():
            spec = {k: v for k, v in spec.items() if k not in ("title", "description", "default")}
            params[name] = {"enum": values[name]} if name in values else spec or {"type": "string"}
        out.append({"name": t.name, "parameters": {"type": "object", "properties": params,
                                                   "required": required, "additionalProperties": False}})
    return out


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("\n", " ")


def result_texts(result: ToolResult) -> list[str]:
    """A tool result as readable units: a record as `field: value` pairs, each record of a list its own unit."""
    args = ", ".join(_cell(v) for v in (result.arguments or {}).values())
    head = f"{result.name}({args})"
    if not result.ok:
        return [f"{head}: {'denied' if result.denied else 'error'}: {result.error}"]
    value = result.result
    if isinstance(value, dict) and set(value) == {"result"}:
        return [f"{head} = {_cell(value['result'])}"]
    if isinstance(value, dict):
        return [f"{head}: " + "; ".join(f"{k}: {_cell(v)}" for k, v in value.items())]
    if isinstance(value, list) and value:
        return [f"{head}: " + "; ".join(f"{k}: {_cell(v)}" for k, v in r.items()) if isinstance(r, dict)
                else f"{head}: {_cell(r)}" for r in value]
    return [f"{head}: {_cell(value)}"]


def _record(ans: Answer, result: ToolResult, emit: Emit, shown: bool = True) -> None:
    """Keep the call (every attempt is audited) and, if the model is to read it, its result as units."""
    ans.tool_calls.append(result)
    emit("tool", result)
    if not shown:
        return
    index = len(ans.tool_calls) - 1
    n = max((u.n for u in ans.units), default=0)
    for i, text in enumerate(result_texts(result), 1):
        ans.units.append(Unit(n + i, text, result.name, kind="tool", call=index))


def _calculation_problem(expression: str, ans: Answer) -> str | None:
    """Why a calculation may not run: it must compute with a figure the user gave, and every figure in it must stand
    in the question or the documents' units."""
    asked = keys_of([ans.question, ans.standalone])
    used = figures(expression)
    if not any(f.values & asked for f in used):
        return "it uses no figure of the question"
    known = asked | keys_of([u.text for u in ans.units])
    strange = [f.raw for f in used if not f.values & known]
    return f"{', '.join(strange)} stands in neither the question nor the documents" if strange else None


def run(ans: Answer, registry: ToolRegistry, user: User, context: ToolContext, said: str,
        backend: ChatBackend | None, think: bool, emit: Emit, route_tools: bool = True) -> None:
    """Make this turn's tool calls: the certain ones, then at most one the model chooses."""
    allowed = registry.allowed(user)
    question = ans.standalone or ans.question
    done: set[str] = set()
    if route_tools:
        for call in routing.route(ans.question, allowed):
            _record(ans, registry.execute(call.name, call.arguments, user, context), emit)
            done.add(call.name)
        if done:
            emit("status", "tool_routed")
    choices = offered(registry.offered(user), said, question, done, [u.text for u in ans.units])
    if backend is None or not choices:
        return
    doc_units = [u.prompt() for u in ans.units if u.call is None]
    messages = answer_messages(doc_units, question, registry.schemas(user, offered_only=True))
    turn = structured(backend, messages, tool_schema(choices), think=False, adapter=ans.adapter)
    raw = str(turn.message.additional_kwargs.get("raw", turn.message.content))
    reply = parse_reply(raw)
    name = reply.data.get("tool") if reply.error is None else None
    if name in (None, "none"):
        if reply.error is not None:
            ans.malformed.append(f"tool choice: {reply.error}")
        return
    arguments = reply.data.get("arguments")
    if not isinstance(arguments, dict) or name not in {c["name"] for c in choices}:
        _record(ans, ToolResult(str(name), arguments if isinstance(arguments, dict) else {}, ok=False,
                                error="not offered this turn", dropped=True), emit, shown=False)
        return
    given = user_values(registry.tools[name], said)  # enforced by the schema where the engine can; checked here
    strange = [str(arguments.get(k)) for k, allowed in given.items() if arguments.get(k) not in allowed]
    if strange:
        _record(ans, ToolResult(name, arguments, ok=False, dropped=True, error=(
            f"not run: {', '.join(strange)} is not a value the user gave")), emit, shown=False)
        return
    figures_arg = (registry.tools[name].metadata or {}).get("uses_figures")
    if figures_arg and isinstance(arguments.get(figures_arg), str):
        problem = _calculation_problem(arguments[figures_arg], ans)
        if problem:
            _record(ans, ToolResult(name, arguments, ok=False, error=f"not run: {problem}", dropped=True), emit,
                    shown=False)
            return
    result = registry.execute(name, arguments, user, context)
    # a calculation that failed states nothing about the documents or the records: audited, not read or shown
    _record(ans, result, emit, shown=result.ok or not figures_arg)
