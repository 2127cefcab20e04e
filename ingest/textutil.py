"""Small text helpers shared by the CLIs and, later, the UI."""

from __future__ import annotations

import re

from core.text import CJK as _CJK

_CJK_BREAK = re.compile(rf"(?<=[{_CJK}])\s*\n\s*(?=[{_CJK}])")


def flatten(text: str) -> str:
    """One line for display: line breaks between Chinese characters vanish, others become spaces."""
    return " ".join(_CJK_BREAK.sub("", text).split())
