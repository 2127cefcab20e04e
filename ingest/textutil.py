"""Small text helpers shared by the CLIs and, later, the UI."""

from __future__ import annotations

import re

_CJK = "\u3000-\u303f\u3400-\u9fff\uff00-\uffef"
_CJK_BREAK = re.compile(rf"(?<=[{_CJK}])\s*\n\s*(?=[{_CJK}])")


def flatten(text: str) -> str:
    """One line for display: line breaks between Chinese characters vanish, others become spaces."""
    return " ".join(_CJK_BREAK.sub("", text).split())
