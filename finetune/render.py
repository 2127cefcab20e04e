"""Conversation -> token ids and labels, with the model's own chat template; loss on assistant tokens only.

The template renders the whole conversation once (so multi-turn, tools and thinking render exactly as at
inference); assistant spans are then found in the text and mapped to tokens through offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.control_tokens import neutralise, neutralise_json
from finetune.data import Conversation

IGNORE = -100
_OPEN = "<|im_start|>assistant\n"
_CLOSE = "<|im_end|>"
_EMPTY_THINK = "<think>\n\n</think>\n\n"


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    source: str
    truncated: bool = False

    @property
    def n_labels(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def supports_reasoning(tokenizer: Any) -> bool:
    return "reasoning_content" in (tokenizer.chat_template or "")


def _neutralised(messages: list[dict]) -> list[dict]:
    """Every role's text (system, user, assistant, tool, reasoning, tool-call arguments) as the chain renders
    it at inference: control-token strings in it are plain text (core.control_tokens). Only the template's own
    markup, rendered from the fields, is made of control tokens, and the assistant's own tool-call blocks."""
    out = []
    for m in messages:
        m = dict(m)
        if isinstance(m.get("content"), str):
            m["content"] = neutralise(m["content"])
        if isinstance(m.get("reasoning_content"), str):
            m["reasoning_content"] = neutralise(m["reasoning_content"])
        if m.get("tool_calls"):
            m["tool_calls"] = neutralise_json(m["tool_calls"])
        out.append(m)
    return out


def _messages_for(tokenizer: Any, conv: Conversation) -> list[dict]:
    if supports_reasoning(tokenizer):
        return _neutralised(conv.messages)
    # a template without thinking support (e.g. Qwen2.5): keep the trace as a literal <think> block
    out = []
    for m in _neutralised(conv.messages):
        if m.get("reasoning_content"):
            m = dict(m, content=f"<think>\n{m['reasoning_content'].strip()}\n</think>\n\n{m['content']}")
            m.pop("reasoning_content")
        out.append(m)
    return out


def render_text(tokenizer: Any, conv: Conversation) -> str:
    return tokenizer.apply_chat_template(
        _messages_for(tokenizer, conv),
        tools=neutralise_json(conv.tools) if conv.tools else None,
        tokenize=False,
        add_generation_prompt=False,
        enable_thinking=conv.enable_thinking,
    )


def assistant_spans(text: str) -> list[tuple[int, int]]:
    """Character spans the model must learn to produce: each assistant body through its <|im_end|>."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while (start := text.find(_OPEN, pos)) != -1:
        body = start + len(_OPEN)
        end = text.find(_CLOSE, body)
        end = len(text) if end == -1 else end + len(_CLOSE)
        # with thinking off the empty think block is part of the generation prompt at inference: not learnt
        if text.startswith(_EMPTY_THINK, body):
            body += len(_EMPTY_THINK)
        spans.append((body, end))
        pos = end
    return spans


def render(tokenizer: Any, conv: Conversation, max_length: int) -> Example:
    text = render_text(tokenizer, conv)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE] * len(ids)
    spans = assistant_spans(text)
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        if b > a and any(s <= a and b <= e for s, e in spans):
            labels[i] = ids[i]
    truncated = len(ids) > max_length
    if truncated:
        ids, labels = ids[:max_length], labels[:max_length]
    return Example(ids, labels, conv.source, truncated)
