"""Character classes for Chinese text, written once (regex character-class bodies and helpers)."""

from __future__ import annotations

import re

HAN = "\u4e00-\u9fff"  # the common CJK unified ideographs
CJK = "\u3000-\u303f\u3400-\u9fff\uff00-\uffef"  # ideographs (with extension A), CJK punctuation, full-width forms
HAN_CHAR = re.compile(f"[{HAN}]")
CJK_CHAR = re.compile(f"[{CJK}]")


def is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def has_han(text: str) -> bool:
    return HAN_CHAR.search(text) is not None
