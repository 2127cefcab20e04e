"""Parse what a Qwen model emits: `<think>` reasoning, `<tool_call>{json}</tool_call>` blocks, and the
fenced-JSON calls small models write instead. Malformed calls are reported, never raised."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.S)
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_BARE = re.compile(r"(\{.*\})", re.S)
_FENCED = re.compile(r"```(?:json|tool_call)?\s*(\{.*?\})\s*```", re.S)


@dataclass
class ParsedCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class ParsedOutput:
    content: str
    thinking: str = ""
    calls: list[ParsedCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # malformed calls, to tell the model


def split_thinking(text: str) -> tuple[str, str]:
    """(thinking, answer). Handles a missing opening tag (the template may have put `<think>` in the prompt)."""
    if "</think>" in text and "<think>" not in text.split("</think>", 1)[0]:
        thinking, _, rest = text.partition("</think>")
        return thinking.strip(), rest.strip()
    m = _THINK.search(text)
    if not m:
        return "", text.strip()
    return m.group(1).strip(), (text[: m.start()] + text[m.end():]).strip()


def _as_call(obj: Any) -> ParsedCall | str:
    if not isinstance(obj, dict):
        return "a tool call must be a JSON object with 'name' and 'arguments'"
    if "function" in obj and isinstance(obj["function"], dict):
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return f"arguments of '{name}' are not valid JSON"
    if not isinstance(name, str) or not name:
        return "a tool call needs a string 'name'"
    if not isinstance(args, dict):
        return f"arguments of '{name}' must be a JSON object"
    return ParsedCall(name, args)


def _bare_objects(text: str) -> list[Any] | None:
    """`{...}\n{...}`: every JSON object in a text made only of them (None if anything else is in it)."""
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while pos < len(text):
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        out.append(obj)
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
    return out or None


def parse_output(text: str) -> ParsedOutput:
    thinking, rest = split_thinking(text)
    calls: list[ParsedCall] = []
    errors: list[str] = []
    blocks = list(_TOOL_CALL.finditer(rest))
    if not blocks:  # small models often write ```json {"name": ..., "arguments": ...}```
        blocks = [m for m in _FENCED.finditer(rest) if '"name"' in m.group(1)]
    if not blocks and rest.startswith("{") and '"name"' in rest:  # or bare JSON objects, one after another
        objects = _bare_objects(rest)
        if objects is not None:
            calls = [c for c in (_as_call(o) for o in objects) if isinstance(c, ParsedCall)]
            errors = [c for c in (_as_call(o) for o in objects) if isinstance(c, str)]
            return ParsedOutput("", thinking, calls, errors)
        blocks = [m for m in [_BARE.fullmatch(rest)] if m]
    for m in blocks:
        try:
            parsed = _as_call(json.loads(m.group(1)))
        except json.JSONDecodeError as exc:
            parsed = f"tool call is not valid JSON ({exc.msg} at column {exc.colno})"
        if isinstance(parsed, str):
            errors.append(parsed)
        else:
            calls.append(parsed)
    content = rest
    for m in reversed(blocks):
        content = content[: m.start()] + content[m.end():]
    return ParsedOutput(content.strip(), thinking, calls, errors)
