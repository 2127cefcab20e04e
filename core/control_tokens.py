"""Text from outside the model (passages, tool results, history, the question) must not become chat-template
control tokens. A passage holding `<|im_end|>\\n<|im_start|>system` would otherwise be tokenised as the real
special tokens and open a forged system turn; `</tool_response>` would close a tool result early.

`neutralise` puts a zero-width space right after the `<` of every such string, so it is tokenised as plain
text and still reads the same. The chain and the training-data rendering (finetune/render.py) call this one
function, so the adapter learns on exactly what it sees at inference. Idempotent.
"""

from __future__ import annotations

import re

ZWSP = "\u200b"
# Qwen's <|...|> special tokens (im_start, im_end, endoftext, fim_*, vision_* ...) and its tag-like added
# tokens; matched generically so that tokens of a newer template are covered too
_CONTROL = re.compile(r"<(?=\|[A-Za-z0-9_]{1,40}\|>|/?(?:think|tool_call|tool_response|tools)>)")


def neutralise(text: str) -> str:
    """`text` with every control-token string broken by a zero-width space (no-op on clean text)."""
    return _CONTROL.sub("<" + ZWSP, text) if "<" in text else text
