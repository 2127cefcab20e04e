"""Training data: read JSONL/JSON files, detect each row's format, normalise it to a chat conversation.

Formats (auto-detected per row):
- alpaca: `instruction`, `input`, `output`, optional `system`, `history` ([[user, assistant], ...])
- messages: OpenAI `messages` (roles system/user/assistant/tool, `tool_calls`, optional `reasoning_content`)
  with optional `tools`; sharegpt `conversations` ({from: human/gpt/system/function_call/observation, value})
- reasoning: `question`, `think`, `answer` (the trace becomes a Qwen3 `<think>` block), optional `system`

A row whose assistant side writes chat-template control tokens itself (`<|im_start|>`, `<tool_response>` ...,
anything but whole `<tool_call>` blocks) is refused with its file:line and field (`core.control_tokens.forged_turn`);
such strings in other roles are data, neutralised when rendered (finetune/render.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.control_tokens import forged_turn
from core.errors import AssistantError, DataError

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system", "observation": "tool", "tool": "tool", "function_call": "assistant"}



@dataclass
class Conversation:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    enable_thinking: bool = False
    source: str = ""  # "file:line", for reports

    @property
    def has_reasoning(self) -> bool:
        return any(m.get("reasoning_content") for m in self.messages)


@dataclass
class Dataset:
    path: Path
    conversations: list[Conversation]
    formats: dict[str, int] = field(default_factory=dict)
    sha256: str = ""


def detect_format(row: dict[str, Any]) -> str | None:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "question" in row and "answer" in row:
        return "reasoning"
    if "instruction" in row and "output" in row:
        return "alpaca"
    return None


def _text(row: dict, key: str, where: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise ValueError(f"missing field '{key}'")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"field '{key}' must be a string, got {type(value).__name__}")
    return value


def _alpaca(row: dict, where: str) -> list[dict]:
    messages: list[dict] = []
    if row.get("system"):
        messages.append({"role": "system", "content": _text(row, "system", where)})
    history = row.get("history") or []
    if not isinstance(history, list):
        raise ValueError("field 'history' must be a list of [user, assistant] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ValueError(f"history[{i}] must be a [user, assistant] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    instruction = _text(row, "instruction", where)
    extra = _text(row, "input", where, required=False)
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(row, "output", where)}]
    return messages


def _reasoning(row: dict, where: str) -> list[dict]:
    messages: list[dict] = []
    if row.get("system"):
        messages.append({"role": "system", "content": _text(row, "system", where)})
    messages.append({"role": "user", "content": _text(row, "question", where)})
    messages.append({"role": "assistant", "content": _text(row, "answer", where),
                     "reasoning_content": _text(row, "think", where, required=False)})
    return messages


def _tool_call(call: Any, i: int) -> dict:
    fn = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ValueError(f"tool_calls[{i}] needs a function name")
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as exc:
            raise ValueError(f"tool_calls[{i}].arguments is not valid JSON ({exc.msg})") from exc
    if not isinstance(args, dict):
        raise ValueError(f"tool_calls[{i}].arguments must be an object")
    return {"type": "function", "function": {"name": fn["name"], "arguments": args}}


def _messages(raw: Any) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("field 'messages' must be a non-empty list")
    out: list[dict] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise ValueError(f"messages[{i}] must be an object")
        role = m.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"messages[{i}].role must be system/user/assistant/tool, got {role!r}")
        content = m.get("content") or ""
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string")
        msg: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant":
            if m.get("tool_calls"):
                msg["tool_calls"] = [_tool_call(c, j) for j, c in enumerate(m["tool_calls"])]
            if m.get("reasoning_content"):
                msg["reasoning_content"] = str(m["reasoning_content"])
            if not content and not msg.get("tool_calls"):
                raise ValueError(f"messages[{i}] (assistant) has neither content nor tool_calls")
        if role == "tool" and m.get("name"):
            msg["name"] = m["name"]
        out.append(msg)
    return out


def _sharegpt(raw: Any) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("field 'conversations' must be a non-empty list")
    out: list[dict] = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or turn.get("from") not in _SHAREGPT_ROLES:
            raise ValueError(f"conversations[{i}].from must be one of {sorted(_SHAREGPT_ROLES)}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise ValueError(f"conversations[{i}].value must be a string")
        if turn["from"] == "function_call":
            try:
                call = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"conversations[{i}] (function_call) is not JSON ({exc.msg})") from exc
            out.append({"role": "assistant", "content": "", "tool_calls": [_tool_call(call, 0)]})
        else:
            out.append({"role": _SHAREGPT_ROLES[turn["from"]], "content": value})
    return out


_LEADING_THINK = re.compile(r"\A\s*<think>(.*?)</think>\s*", re.S)


def _split_leading_think(message: dict) -> None:
    """An assistant content that opens with a <think> block (Qwen3/R1 style) is a reasoning trace: it moves to
    `reasoning_content`, where the template renders it, instead of being read as forged markup."""
    if message["role"] != "assistant" or message.get("reasoning_content"):
        return
    if found := _LEADING_THINK.match(message["content"]):
        if found.group(1).strip():
            message["reasoning_content"] = found.group(1).strip()
        message["content"] = message["content"][found.end():]


def _field_name(fmt: str, row: dict, messages: list[dict], index: int, part: str) -> str:
    """The row's own field behind normalised message `index` (`part`: content, reasoning_content, tool_calls[j])."""
    if fmt == "messages":
        return f"messages[{index}].{part}"
    if fmt == "sharegpt":
        return f"conversations[{index}].value"
    if fmt == "reasoning":
        return "think" if part == "reasoning_content" else "answer"
    turn = sum(1 for m in messages[:index] if m["role"] == "assistant")  # alpaca: history pairs, then output
    return f"history[{turn}][1]" if turn < len(row.get("history") or []) else "output"


def to_conversation(row: Any, where: str, enable_thinking: bool | None = None) -> Conversation:
    """Normalise one row; raises ValueError with the field at fault (the caller adds file and line)."""
    if not isinstance(row, dict):
        raise ValueError(f"each row must be a JSON object, got {type(row).__name__}")
    fmt = detect_format(row)
    if fmt is None:
        raise ValueError(
            "unknown format: expected `messages`, `conversations`, `question`+`answer` or `instruction`+`output`"
        )
    if fmt == "alpaca":
        messages = _alpaca(row, where)
    elif fmt == "reasoning":
        messages = _reasoning(row, where)
    elif fmt == "sharegpt":
        messages = _sharegpt(row["conversations"])
    else:
        messages = _messages(row["messages"])
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant turn to learn from")
    if fmt in ("messages", "sharegpt"):
        for m in messages:
            _split_leading_think(m)
    if forged := forged_turn(messages):
        index, part, token = forged
        raise ValueError(
            f"{_field_name(fmt, row, messages, index, part)} (an assistant turn) holds the control token {token!r}: "
            "a training row may not write chat-template markup itself (it would forge a turn); put tool calls in "
            "`tool_calls` (or whole <tool_call>…</tool_call> blocks) and reasoning in `reasoning_content`, or "
            "remove the row")
    tools = row.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise ValueError("field 'tools' must be a list of tool schemas")
    conv = Conversation(messages, tools or None, source=where)
    # per-dataset setting; by default reasoning traces train thinking mode and everything else trains it off
    conv.enable_thinking = conv.has_reasoning if enable_thinking is None else enable_thinking
    return conv


# No training example nests this deep; deeper input would exhaust Python's recursion in the JSON parser or in
# the chat template instead of being reported.
MAX_DEPTH = 64


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(path, line, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {col}); save the file "
                        "as UTF-8 (e.g. `iconv -f GB18030 -t UTF-8 in.jsonl > out.jsonl`)") from None


def _too_deep(text: str, base_line: int = 1) -> tuple[int, int] | None:
    """(line, depth) where brackets outside strings first nest deeper than MAX_DEPTH, else None."""
    depth, line, in_str, escaped = 0, base_line, False, False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, depth
        elif ch in "]}":
            depth -= 1
        if ch == "\n":
            line += 1
    return None


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:  # deeper is already an error: no need to walk further
                stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _too_deep_error(path: Path, line: int) -> DataError:
    return DataError(path, line, f"JSON nested more than {MAX_DEPTH} levels deep; a training example is a "
                     "flat object with a list of messages: fix or remove it")


def _loads(path: Path, text: str, line: int, what: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:  # nested beyond what the parser can read: find where, without recursion
        where = _too_deep(text, line)
        raise _too_deep_error(path, where[0] if where else line) from None
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}" if what == "file" else f"column {exc.colno}"
        raise DataError(path, line + exc.lineno - 1,
                        f"invalid JSON ({exc.msg} at {at})" + ("; expected a list of examples" if what == "file"
                                                               else "")) from None
    if what == "line" and _depth(value) > MAX_DEPTH:
        raise _too_deep_error(path, line)
    return value


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    text = _read_text(path)
    if path.suffix == ".json":
        data = _loads(path, text, 1, "file")
        if not isinstance(data, list):
            raise DataError(path, 1, "a .json file must hold a list of examples (or use .jsonl)")
        for i, row in enumerate(data):
            if _depth(row) > MAX_DEPTH:
                raise _too_deep_error(path, i + 1)
            yield i + 1, row  # "line" is the example's position in the list
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        yield n, _loads(path, line, n, "line")


def data_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix in (".jsonl", ".json") and f.is_file())
        elif p.is_file():
            out.append(p)
        else:
            raise AssistantError(f"training data not found: {p}")
    if not out:
        raise AssistantError(f"no .jsonl or .json files in {', '.join(map(str, paths))}")
    return out


def load_dataset(path: Path, enable_thinking: bool | None = None) -> Dataset:
    convs: list[Conversation] = []
    formats: dict[str, int] = {}
    for line, row in _rows(path):
        where = f"{path.name}:{line}"
        try:
            conv = to_conversation(row, where, enable_thinking)
        except ValueError as exc:
            raise DataError(path, line, str(exc)) from None
        fmt = detect_format(row) or "?"
        formats[fmt] = formats.get(fmt, 0) + 1
        convs.append(conv)
    if not convs:
        raise DataError(path, 1, "no examples in file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Dataset(path, convs, formats, digest)


def load_datasets(paths: list[Path], enable_thinking: bool | None = None) -> list[Dataset]:
    return [load_dataset(p, enable_thinking) for p in data_files(paths)]
