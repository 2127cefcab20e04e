"""Conditions stated as ranges of a quantity, and whether a quantity the question gives meets them.

A tiered rule states a range per clause ("200 至 999 人享受九折，1000 人以上享受八五折", "claims above CNY 300,000
require the Head of Claims, and claims above CNY 1,000,000 the Claims Committee"). A clause whose range is over the
same kind of quantity as one the question gives (people, an amount of money, days) applies only when the question's
quantity lies in it: a figure that stands in a clause of another tier is not the answer, whatever its words share
with the question.

Quantities are (value, kind): the value normalised by `figures`, the kind the unit written next to it
(元/CNY/yuan are one currency, 人/people one headcount, 日/天/days one duration; any other unit compares as written).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core.figures import CN_NUMERALS, figures

_KINDS: list[tuple[str, str]] = [  # (unit as written, kind); longest first where one unit holds another
    (r"个工作日|工作日|business days?|working days?", "workday"),
    (r"万元|亿元|元|块|人民币|CNY|RMB|yuan|¥|￥", "CNY"),
    (r"美元|USD|US\$|\$|dollars?", "USD"), (r"欧元|EUR|€|euros?", "EUR"), (r"港元|港币|HKD", "HKD"),
    (r"英镑|GBP|£|pounds?", "GBP"),
    (r"周岁|岁|years? old|years? of age", "age"),
    (r"人次|人|名|位|people|persons?|employees?|members?|staff|insureds?|lives", "person"),
    (r"个月|月|months?", "month"), (r"小时|hours?|hrs?", "hour"), (r"分钟|minutes?|mins?", "minute"),
    (r"日|天|days?|calendar days?", "day"), (r"周|星期|weeks?", "week"), (r"年|years?", "year"),
    (r"毫升|ml|mL", "ml"), (r"%|％|percent|per cent|百分", "percent"),
]
_KIND_RE = [(re.compile(rf"^[\s-]*(?:{pat})", re.I), kind) for pat, kind in _KINDS]
_KIND_BEFORE = [(re.compile(rf"(?:{pat})\s*$", re.I), kind) for pat, kind in _KINDS
                if kind in ("CNY", "USD", "EUR", "HKD", "GBP")]
# bound words after a figure ("30 万元以上") or before it ("above CNY 300,000", "超过 30 万元"); the bounds of an
# upper limit go first: "不超过" holds "超过", "not exceeding" holds "exceed"
_UPPER_AFTER = re.compile(r"^[^\d，,；;。]{0,6}?(以下|以内|之内|内|或以下|及以下|or less|or fewer|"
                          r"and below|and under|or under|maximum|at most)", re.I)
_LOWER_AFTER = re.compile(r"^[^\d，,；;。]{0,6}?(以上|及以上|或以上|起|or more|and above|and over|"
                          r"or above|plus|\+|minimum|at least)", re.I)
_UPPER_BEFORE = re.compile(r"(不超过|不高于|不多于|不足|少于|低于|小于|未满|不满|up to|not exceeding|"
                           r"not more than|no more than|not over|less than|fewer than|below|under|within|"
                           r"at most|maximum of|max\.?)[^\d，,；;。]{0,8}$", re.I)
_LOWER_BEFORE = re.compile(r"(超过|高于|多于|大于|不少于|不低于|满|达到|above|over|more than|exceeding|"
                           r"exceeds?|greater than|at least|in excess of|minimum of|from)[^\d，,；;。]{0,8}$", re.I)
_BETWEEN = re.compile(r"^\s*(?:[^\d，,；;。]{0,4})\s*(?:至|到|~|～|-|–|—|to|and|through)\s*", re.I)
# a comma inside a number (300,000) or a colon inside a time (10:30) ends no clause
_CLAUSE = re.compile(r"[，；;。：\n]|,(?!\d{3}(?!\d))|:(?!\d)|\s(?:and|or|but|while|whereas)\s", re.I)
_STRICT = re.compile(r"above|over|more than|exceed|greater|超过|高于|多于|大于|不足|少于|低于|小于|"
                     r"未满|不满|below|under|less than|fewer than|in excess", re.I)


@dataclass(frozen=True)
class Quantity:
    value: float
    kind: str
    side: int = 0  # +1: the question asks about more than `value` ("above X"), -1 less than it, 0 the value itself

    def point(self) -> float:
        """The value the question is about: just past a bound it names ("above 300,000" is 300,000 + ε)."""
        return self.value + self.side * max(abs(self.value) * 1e-6, 1e-9)


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    kind: str
    low_open: bool = False
    high_open: bool = False

    def holds(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below


def _kind(text: str, start: int, end: int) -> str | None:
    """The kind of the figure at text[start:end]: the unit after it, or a currency before it."""
    after = text[end:end + 14]
    for pat, kind in _KIND_RE:
        if pat.match(after):
            return kind
    before = text[max(0, start - 6):start]
    for pat, kind in _KIND_BEFORE:
        if pat.search(before):
            return kind
    m = re.match(r"^\s*([\u4e00-\u9fff])", after)  # any other unit compares as written (床, 台, 次)
    if m and m.group(1) not in CN_NUMERALS and m.group(1) not in "的和或及至到以起内前后":
        return "u:" + m.group(1)
    m = re.match(r"^[\s-]*([a-z]{2,})", after, re.I)
    if m and m.group(1).lower() not in ("to", "and", "or", "of", "the", "in", "a", "an", "per", "for", "at", "by"):
        return "u:" + m.group(1).lower().rstrip("s")
    return None


def _side(text: str, start: int, end: int) -> int:
    after, before = text[end:end + 12], text[max(0, start - 24):start]
    if _UPPER_BEFORE.search(before) or _UPPER_AFTER.match(after):
        return -1
    if _LOWER_BEFORE.search(before) or _LOWER_AFTER.match(after):
        return 1
    return 0


def _numbers(text: str) -> list[tuple[int, int, float]]:
    """(start, end, value) of the plain numbers of a text (dates, identifiers and percentages' fractions aside)."""
    out = []
    for f in figures(text):
        if f.number is None or not any(k.startswith("n:") for k in f.values):
            continue
        out.append((f.start, f.end or f.start + len(f.raw), f.number))
    return out


def quantities(question: str) -> list[Quantity]:
    """The quantities a question states, with their kind and the side of a bound it names."""
    out = []
    for start, end, value in _numbers(question):
        kind = _kind(question, start, end)
        if kind is None or (kind == "year" and 1900 <= value <= 2100):  # a calendar year, not a duration
            continue
        out.append(Quantity(value, kind, _side(question, start, end)))
    return out


def ranges(clause: str) -> list[Range]:
    """The ranges a clause states: "A 至 B", "A 以上", "above A", "up to A" (with their kinds)."""
    nums = _numbers(clause)
    out: list[Range] = []
    used: set[int] = set()
    for i, (start, end, value) in enumerate(nums):
        if i in used:
            continue
        if i + 1 < len(nums):
            nxt = nums[i + 1]
            between = clause[end:nxt[0]]
            m = _BETWEEN.match(between)
            if m and m.end() == len(between):
                kind = _kind(clause, nxt[0], nxt[1]) or _kind(clause, start, end)
                if kind:
                    out.append(Range(value, nxt[2], kind))
                    used |= {i, i + 1}
                    continue
        side = _side(clause, start, end)
        kind = _kind(clause, start, end)
        if side == 0 or kind is None:
            continue
        strict = bool(_STRICT.search(clause[max(0, start - 24):end + 12]))
        out.append(Range(value, math.inf, kind, low_open=strict) if side > 0
                   else Range(-math.inf, value, kind, high_open=strict))
    return out


def clauses(text: str) -> list[str]:
    return [c.strip() for c in _CLAUSE.split(text) if c and c.strip()]


def applies(clause: str, asked: list[Quantity]) -> bool | None:
    """Whether a clause's condition holds for the question's quantities: None when it states no range over a kind
    of quantity the question gives (then it is no condition on it)."""
    verdict = None
    for r in ranges(clause):
        for q in asked:
            if q.kind == r.kind:
                if r.holds(q.point()):
                    return True
                verdict = False
    return verdict


def verdicts(text: str, asked: list[Quantity]) -> list[tuple[str, bool | None]]:
    """Each clause of a text with whether its condition holds for the question's quantities (None: it states none
    of their kind). Where several clauses' ranges hold, only the narrowest applies: tiers are read most specific
    first ("above 300,000: the Head of Claims; above 1,000,000: the Committee" gives 1.2 million to the Committee)."""
    out: list[tuple[str, bool | None]] = []
    held: list[tuple[int, Range]] = []
    for c in clauses(text):
        verdict: bool | None = None
        for r in ranges(c):
            for q in asked:
                if q.kind == r.kind:
                    if r.holds(q.point()):
                        verdict = True
                        held.append((len(out), r))
                    elif verdict is None:
                        verdict = False
        out.append((c, verdict))
    def inside(a: Range, b: Range) -> bool:  # a strictly narrower than b
        return a.kind == b.kind and a.low >= b.low and a.high <= b.high and (a.low, a.high) != (b.low, b.high)

    for i in {i for i, _ in held}:
        own = [r for j, r in held if j == i]
        if all(any(inside(r2, r) for j, r2 in held if j != i) for r in own):
            out[i] = (out[i][0], False)  # a wider tier that a narrower one holding the same quantity overrides
    return out
