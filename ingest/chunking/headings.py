"""Heading detection for contracts, regulations, manuals and Markdown, in Chinese and English.

A heading has a rank (smaller = higher in the hierarchy) and a label used in the chunk's heading path.
Explicit markers (第X条, ARTICLE 5, Section 2.3, # Title) always count; bare numbering (一、, （一）,
1.2.3 Title) counts only on short, title-like lines, because in running text it marks list items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.text import has_han

_ZH_NUM = r"[一二三四五六七八九十百千零〇两\d]+"
_SENTENCE_END = ("。", "；", ";", "，", ",", "：", ":", "、")


@dataclass(frozen=True)
class Heading:
    rank: int
    label: str


def _title(marker: str, rest: str, max_len: int) -> str:
    """The label: marker plus the rest of the line when the rest is a short title."""
    rest = rest.strip(" \t-—–.:：．、")
    if not rest:
        return marker
    # the title ends where the clause body starts: sentence punctuation, "Fees. The...", or the
    # space between a Chinese title and its body ("第五条 意外身故保险金 在保险期间内，...")
    cut = r"[。；;，,:：]|\.\s|\s{2,}" + (r"|\s" if _has_cjk(rest[:8]) else "")
    head = re.split(cut, rest, maxsplit=1)[0].strip()
    if head != rest:
        return f"{marker} {head}" if head and len(head) <= 24 else marker
    return f"{marker} {rest}" if len(rest) <= max_len else marker


_MARKDOWN = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_ZH_EXPLICIT = re.compile(rf"^\s*(第{_ZH_NUM}\s*(编|部分|章|节|条|款))\s*(.*)$")
_ZH_RANK = {"编": 1, "部分": 1, "章": 2, "节": 3, "条": 4, "款": 5}
_EN_EXPLICIT = re.compile(
    r"^\s*((PART|Part|CHAPTER|Chapter|ARTICLE|Article|SECTION|Section|SCHEDULE|Schedule|ANNEX|Annex|"
    r"APPENDIX|Appendix|EXHIBIT|Exhibit)\s+([IVXLC]+|\d+(?:\.\d+)*|[A-Z])\b\.?)\s*(.*)$"
)
_EN_RANK = {"part": 1, "chapter": 2, "schedule": 2, "annex": 2, "appendix": 2, "exhibit": 2, "article": 4}
_ZH_ENUM = re.compile(rf"^\s*({_ZH_NUM}、)\s*(.+)$")
_ZH_PAREN = re.compile(rf"^\s*([（(]{_ZH_NUM}[）)])\s*(.+)$")
_DECIMAL = re.compile(r"^\s*(\d{1,2}(?:\.\d{1,2}){0,4})(\.|、|\s)\s*(\S.*)$")


def detect_heading(line: str) -> Heading | None:
    """Return the heading this line starts, or None for body text."""
    s = line.strip()
    if not s:
        return None
    if m := _MARKDOWN.match(s):
        return Heading(len(m.group(1)), m.group(2).strip())
    if m := _ZH_EXPLICIT.match(s):
        return Heading(_ZH_RANK[m.group(2)], _title(m.group(1).replace(" ", ""), m.group(3), 20))
    if m := _EN_EXPLICIT.match(s):
        kind = m.group(2).lower()
        number = m.group(3)
        rank = _EN_RANK.get(kind)
        if rank is None:  # "Section 2.3": nested under articles by its depth
            rank = 4 + number.count(".") + (1 if "." in number else 0)
        rest = m.group(4)
        # "Section 5 of this Agreement ..." in running text is a reference, not a heading
        if rest and rest[:1].islower():
            return None
        return Heading(rank, _title(f"{m.group(2)} {number}", rest, 60))
    if m := _ZH_ENUM.match(s):
        if _short_title(m.group(2), 24):
            return Heading(5, f"{m.group(1)}{m.group(2).strip()}")
        return None
    if m := _ZH_PAREN.match(s):
        if _short_title(m.group(2), 24):
            return Heading(6, f"{m.group(1)}{m.group(2).strip()}")
        return None
    if m := _DECIMAL.match(s):
        number, title = m.group(1), m.group(3)
        if _short_title(title, 60) and not _looks_numeric(title) and (title[:1].isupper() or _has_cjk(title)):
            return Heading(5 + number.count("."), f"{number} {title.strip()}")
    return None


def _short_title(text: str, max_len: int) -> bool:
    t = text.strip()
    return 0 < len(t) <= max_len and not t.endswith(_SENTENCE_END + ("．", ".", "?", "？", "!", "！"))


def _looks_numeric(text: str) -> bool:
    return sum(ch.isdigit() for ch in text) > 0.3 * len(text)


def _has_cjk(text: str) -> bool:
    return has_han(text)
