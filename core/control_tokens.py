"""Text from outside the model (passages, tool results, history, the question) must not become chat-template
control tokens. A passage holding `<|im_end|>\\n<|im_start|>system` would otherwise be tokenised as the real
special tokens and open a forged system turn; `</tool_response>` would close a tool result early.

`neutralise` puts a zero-width space right after the `<` of every such string, so it is tokenised as plain
text and still reads the same. The chain and the training-data rendering (finetune/render.py, every role) call
this one function, so the adapter learns on exactly what it sees at inference. Idempotent. `forged_turn` is the
gate of training data (files, and staff corrections): the assistant's own text may not write such strings.
"""

from __future__ import annotations

import json
import re
from typing import Any

ZWSP = "\u200b"
# Qwen's <|...|> special tokens (im_start, im_end, endoftext, fim_*, vision_* ...) and its tag-like added
# tokens; matched generically so that tokens of a newer template are covered too
_CONTROL = re.compile(r"<(?=\|[A-Za-z0-9_]{1,40}\|>|/?(?:think|tool_call|tool_response|tools)>)")


def neutralise(text: str) -> str:
    """`text` with every control-token string broken by a zero-width space (no-op on clean text)."""
    return _CONTROL.sub("<" + ZWSP, text) if "<" in text else text

_TOKEN = re.compile(r"<(?:\|[A-Za-z0-9_]{1,40}\|>|/?(?:think|tool_call|tool_response|tools)>)")


def neutralise_json(value: Any) -> Any:
    """`neutralise` on every string (keys included) inside a JSON-like value: tool arguments and schemas."""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, dict):
        return {neutralise(str(k)): neutralise_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [neutralise_json(v) for v in value]
    return value


def control_token_in(text: str) -> str | None:
    """The first control-token string in `text` (e.g. '<|im_start|>'), or None."""
    found = _TOKEN.search(text) if "<" in text else None
    return found.group() if found else None


def forged_turn(messages: list[dict[str, Any]]) -> tuple[int, str, str] | None:
    """Where a conversation's assistant side writes a control-token string: (message index, field, the string),
    or None. Training refuses such a conversation: raw, the string would end the turn, open another (a forged
    system or tool turn) or break the template's own markup; neutralised, it would teach the model to write a
    look-alike. The assistant's replies are structured JSON (core.prompts): no markup of any kind belongs in them;
    reasoning belongs in `reasoning_content`, native tool calls in `tool_calls`, which the chat template renders."""
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        content = m.get("content")
        if isinstance(content, str) and (token := control_token_in(content)):
            return i, "content", token
        reasoning = m.get("reasoning_content")
        if isinstance(reasoning, str) and (token := control_token_in(reasoning)):
            return i, "reasoning_content", token
        for j, call in enumerate(m.get("tool_calls") or []):
            if token := control_token_in(json.dumps(call, ensure_ascii=False, default=str)):
                return i, f"tool_calls[{j}]", token
    return None
