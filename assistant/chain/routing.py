"""Tool calls the question itself makes certain: a record id in a known format, an arithmetic expression.

A tool declares per argument a regex (`business_tool(route=...)`); when it finds exactly one value in the
question and the user may use the tool, the chain runs the call before the model's first turn and hands the
model the result, as if the model had asked for it. The model still writes the answer, from the result; what a
model may not do is skip the look-up and invent the record. Nothing is routed where the value is ambiguous
(two policy numbers) or the tool needs more than the one argument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import BaseTool


@dataclass
class RoutedCall:
    name: str
    arguments: dict[str, Any]


def normal_value(raw: str) -> str:
    """The matched text as the tool takes it: full-width brackets and operators as ASCII, thousands commas out."""
    table = str.maketrans({"（": "(", "）": ")", "×": "*", "÷": "/"})
    return re.sub(r"(?<=\d),(?=\d{3})", "", raw.translate(table)).strip()


def route(question: str, tools: list[BaseTool], limit: int = 3) -> list[RoutedCall]:
    """The calls `question` makes certain among `tools` (those the user may use), at most `limit`."""
    calls: list[RoutedCall] = []
    for t in tools:
        routes: dict[str, str] = (t.metadata or {}).get("route") or {}
        required = set((t.args_schema.model_json_schema() if t.args_schema else {}).get("required", []))
        if len(routes) != 1 or not set(routes) >= required:
            continue
        (arg, pattern), = routes.items()
        found = list(dict.fromkeys(normal_value(m.group(0)) for m in re.finditer(pattern, question, re.I)))
        if len(found) == 1:
            calls.append(RoutedCall(t.name, {arg: found[0].upper() if "-" in found[0] else found[0]}))
    return calls[:limit]
